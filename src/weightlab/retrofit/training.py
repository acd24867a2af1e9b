"""Geometry retrofit: continue training a pretrained LM with a Gram regulariser and a transport step.

Three methods, as in the original study (shared/sources/002_*.txt):

- ``standard``: plain continued training with AdamW;
- ``gram``: plus ``gram_weight * sum ||G(W) - I||_F^2`` over the FFN weight matrices W;
- ``geometry``: ``gram`` plus, every ``glt_interval`` steps, a transport step that row-normalises,
  then column-normalises each FFN weight and rescales it to its original Frobenius norm.

``G(W)`` is the Gram matrix of the *smaller side*: ``W W^T`` when W has fewer rows than columns,
``W^T W`` otherwise. The original regularised ``W W^T`` whatever the shape; for a wide matrix
(e.g. 1536 x 384 used as 384 x 1536) that Gram is rank-deficient, so ``||W W^T - I||^2`` can never
go below (number of zero eigenvalues) and its gradient keeps pulling on the directions it
cannot fix. The smaller-side Gram can reach the identity exactly (orthonormal rows or columns).

Two conditioning numbers are measured; they are different things:

- ``conditioning`` (the headline, "FF Gram conditioning" of the original): for each FFN weight,
  the condition number of its smaller-side Gram, ``(s_max / s_min)^2`` of W's singular values,
  averaged (arithmetic mean, as the original) over all FFN matrices of all layers;
- ``activation_conditioning``: for each layer, the condition number of the covariance of the
  FFN's input activations on the validation tokens, averaged over layers.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from weightlab.errors import InputError
from weightlab.text import documents_of

METHODS = ("standard", "gram", "geometry")
RUNS = {"standard": "standard", "gram_only": "gram", "geometry": "geometry"}  # file stem -> method
METRICS = ("conditioning", "activation_conditioning", "perplexity", "loss")
EVAL_BATCH = 16  # sequences per evaluation forward pass (tiny batches are several times slower per token on CPU)


# --- the regulariser, the transport step and the conditioning metrics --------------------------


def smaller_gram(weight: torch.Tensor) -> torch.Tensor:
    """Gram matrix of the smaller side: W W^T if rows <= columns, else W^T W."""
    return weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight


def gram_penalty(weight: torch.Tensor) -> torch.Tensor:
    """||G - I||_F^2 for the smaller-side Gram G: zero exactly when the rows (wide W) or the
    columns (tall W) are orthonormal."""
    gram = smaller_gram(weight)
    return (gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)).pow(2).sum()


def gram_penalty_grad(weight: torch.Tensor) -> torch.Tensor:
    """d/dW ||G - I||_F^2: 4 (G - I) W for a wide W, 4 W (G - I) for a tall one."""
    gram = smaller_gram(weight)
    residual = gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return 4 * residual @ weight if weight.shape[0] <= weight.shape[1] else 4 * weight @ residual


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run small LAPACK calls on one thread: with two, eigvalsh of a 576 x 576 matrix ran up to
    25 times slower on a shared 2-core machine (threads spinning while the other core is busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def gram_condition_number(weight: torch.Tensor) -> float:
    """Condition number of the smaller-side Gram (2-norm, like numpy.linalg.cond); inf if singular.
    The Gram is formed in the weight's precision (float32: exact enough below ~1e5) and its
    eigenvalues are found in float64."""
    gram = smaller_gram(weight.detach()).to(torch.float64)
    with single_threaded():
        eig = torch.linalg.eigvalsh(gram)
    return float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf


def covariance_condition_number(covariance: torch.Tensor) -> float:
    """lambda_max / lambda_min of a symmetric covariance matrix; inf if singular."""
    with single_threaded():
        eig = torch.linalg.eigvalsh(covariance.to(torch.float64))
    return float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf


@torch.no_grad()
def transport_(weight: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """In place: divide every row by its norm, then every column by its norm, then rescale to
    the original Frobenius norm (the original study's 'simplified GLT')."""
    norm = weight.norm()
    balanced = weight / (weight.norm(dim=1, keepdim=True) + eps)
    balanced = balanced / (balanced.norm(dim=0, keepdim=True) + eps)
    weight.copy_(balanced * (norm / balanced.norm()))
    return weight


def ffn_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Every 2-D weight inside a feed-forward block ('.mlp.' in its name: Llama's gate/up/down
    projections, GPT-2's c_fc/c_proj)."""
    weights = {n: p for n, p in model.named_parameters() if p.ndim == 2 and ".mlp." in n}
    if not weights:
        raise InputError("the model has no 2-D parameters under '.mlp.'; the retrofit needs FFN weight matrices.")
    return weights


def ffn_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The feed-forward block of every layer (modules named '*.mlp')."""
    return {n: m for n, m in model.named_modules() if n.endswith(".mlp")}


def weight_conditioning(model: torch.nn.Module) -> dict[str, float]:
    """Gram condition number of every FFN weight matrix."""
    return {name: gram_condition_number(w) for name, w in ffn_weights(model).items()}


def total_gram_penalty(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(sum(float(gram_penalty(w)) for w in ffn_weights(model).values()))


# --- data ---------------------------------------------------------------------------------------


def token_blocks(tokenizer: Any, texts: Sequence[str], seq_len: int, max_blocks: int | None = None) -> torch.Tensor:
    """Documents tokenised, joined with the EOS token, cut into (n, seq_len) blocks."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False).input_ids + ([eos] if eos is not None else [])
        if max_blocks is not None and len(ids) >= max_blocks * seq_len:
            break
    n = len(ids) // seq_len if max_blocks is None else min(len(ids) // seq_len, max_blocks)
    if n == 0:
        raise InputError(f"{len(texts)} documents give {len(ids)} tokens, fewer than one block of {seq_len}.")
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def batch_indices(n_blocks: int, batch_size: int, num_steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches of block indices for every step: epochs of seeded permutations, concatenated."""
    needed = batch_size * num_steps
    order = torch.cat([torch.randperm(n_blocks, generator=generator) for _ in range(-(-needed // n_blocks))])
    yield from order[:needed].view(num_steps, batch_size)


def validation_blocks(tokenizer: Any, corpus: Mapping[str, Any], source: str, seq_len: int, eval_sequences: int) -> torch.Tensor:
    """The first `eval_sequences` blocks of the validation documents of `source` (the same for every method)."""
    return token_blocks(tokenizer, documents_of(corpus, "validation", source), seq_len, eval_sequences)


def retrofit_data(
    tokenizer: Any, corpus: Mapping[str, Any], source: str, seq_len: int, eval_sequences: int, max_docs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Training blocks from the first `max_docs` training documents of `source`, the validation
    blocks, and a description of both."""
    train_docs = documents_of(corpus, "train", source)[:max_docs]
    train = token_blocks(tokenizer, train_docs, seq_len)
    validation = validation_blocks(tokenizer, corpus, source, seq_len, eval_sequences)
    info = {
        "corpus": source, "train_documents": len(train_docs), "seq_len": seq_len,
        "train_blocks": len(train), "validation_blocks": len(validation), "validation_tokens": validation.numel(),
    }
    return train, validation, info


# --- evaluation ---------------------------------------------------------------------------------


class ActivationCovariance:
    """Accumulates, per FFN block, the covariance of its input over every token seen."""

    def __init__(self, modules: Mapping[str, torch.nn.Module]):
        self.sums: dict[str, torch.Tensor] = {}
        self.outer: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str):
        def hook(_module: torch.nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float64)
            if name not in self.sums:
                self.sums[name] = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
                self.outer[name] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
                self.count[name] = 0
            self.sums[name] += x.sum(0)
            self.outer[name] += x.T @ x
            self.count[name] += x.shape[0]
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def condition_numbers(self) -> dict[str, float | None]:
        """Per block; None where there are no more tokens than dimensions (the covariance is singular)."""
        result: dict[str, float | None] = {}
        for name, total in self.sums.items():
            n, d = self.count[name], total.shape[0]
            if n <= d:
                result[name] = None
                continue
            mean = total / n
            result[name] = covariance_condition_number((self.outer[name] - n * torch.outer(mean, mean)) / (n - 1))
        return result


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return float(np.mean(finite)) if finite else None


def _median(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return float(np.median(finite)) if finite else None


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, blocks: torch.Tensor, device: torch.device, detail: bool = False, batch_size: int = EVAL_BATCH,
) -> dict[str, Any]:
    """Validation loss and perplexity (token-weighted), weight Gram conditioning and activation
    covariance conditioning; with `detail`, the per-matrix and per-layer values too."""
    was_training = model.training
    model.eval()
    covariance = ActivationCovariance(ffn_modules(model))
    nll, tokens = 0.0, 0
    try:
        for batch in blocks.split(batch_size):
            batch = batch.to(device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"))
            tokens += batch[:, 1:].numel()
    finally:
        covariance.remove()
    model.train(was_training)
    by_matrix = weight_conditioning(model)
    by_layer = covariance.condition_numbers()
    loss = nll / tokens
    result = {
        "loss": loss,
        "perplexity": math.exp(loss),
        "conditioning": _mean(list(by_matrix.values())),
        "conditioning_median": float(np.median(list(by_matrix.values()))),
        "activation_conditioning": _mean(list(by_layer.values())),
        "activation_conditioning_median": _median(list(by_layer.values())),
        "gram_penalty": total_gram_penalty(model),
        "tokens": tokens,
    }
    if detail:
        result["conditioning_by_matrix"] = by_matrix
        result["activation_conditioning_by_layer"] = by_layer
    return result


# --- continued training -------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrofitConfig:
    method: str
    num_steps: int
    lr: float
    batch_size: int
    eval_interval: int
    gram_weight: float = 0.0
    glt_interval: int = 0
    weight_decay: float = 0.01
    trainable: str = "all"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown retrofit method '{self.method}'; choose from {METHODS}.")
        if self.trainable not in ("all", "mlp"):
            raise InputError(f"trainable must be 'all' or 'mlp', got '{self.trainable}'.")

    @classmethod
    def from_settings(cls, method: str, settings: Mapping[str, Any]) -> "RetrofitConfig":
        """The training fields of a `retrofit:` config section (other keys are ignored)."""
        fields = ("num_steps", "lr", "batch_size", "eval_interval", "gram_weight", "glt_interval", "weight_decay", "trainable")
        return cls(method=method, **{k: settings[k] for k in fields if k in settings})

    @property
    def uses_gram(self) -> bool:
        return self.method in ("gram", "geometry") and self.gram_weight > 0

    @property
    def uses_transport(self) -> bool:
        return self.method == "geometry" and self.glt_interval > 0


def method_settings(method: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The retrofit settings a method uses: standard ignores gram_weight and glt_interval, gram
    ignores glt_interval (so changing them re-runs only the methods that use them)."""
    unused = {"standard": ("gram_weight", "glt_interval"), "gram": ("glt_interval",), "geometry": ()}[method]
    return {k: v for k, v in settings.items() if k not in unused}


def _trainable_parameters(model: torch.nn.Module, trainable: str) -> list[torch.nn.Parameter]:
    ffn = {id(p) for p in ffn_weights(model).values()}
    for p in model.parameters():
        p.requires_grad_(trainable == "all" or id(p) in ffn)
    return [p for p in model.parameters() if p.requires_grad]


def _record(trajectory: dict[str, list], step: int, measure: Mapping[str, Any], train_loss: float | None, seconds: float) -> None:
    trajectory["steps"].append(step)
    for key in (*METRICS, "gram_penalty"):
        trajectory[key].append(measure[key])
    trajectory["train_loss"].append(train_loss)
    trajectory["seconds"].append(seconds)


def retrofit(
    model: torch.nn.Module, train_blocks: torch.Tensor, val_blocks: torch.Tensor, cfg: RetrofitConfig,
    device: torch.device, generator: torch.Generator, initial: Mapping[str, Any] | None = None, desc: str = "retrofit",
) -> dict[str, Any]:
    """Continue training `model` with `cfg.method`; measure every `eval_interval` steps and at the
    end. `initial` (the unmodified model's measurement) saves re-measuring step 0."""
    model.to(device).train()
    params = _trainable_parameters(model, cfg.trainable)
    ffn = list(ffn_weights(model).values())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    trajectory: dict[str, list] = {k: [] for k in ("steps", *METRICS, "gram_penalty", "train_loss", "seconds")}
    initial = dict(initial) if initial is not None else evaluate(model, val_blocks, device, detail=True)
    _record(trajectory, 0, initial, None, 0.0)
    train_seconds, eval_seconds, transports, losses = 0.0, 0.0, 0, []
    final = initial
    progress = tqdm(batch_indices(len(train_blocks), cfg.batch_size, cfg.num_steps, generator),
                    total=cfg.num_steps, desc=desc, file=sys.stderr, mininterval=5)
    for step, index in enumerate(progress, start=1):
        start = time.perf_counter()
        batch = train_blocks[index].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        if cfg.uses_gram:
            with torch.no_grad():
                for weight in ffn:
                    weight.grad.add_(gram_penalty_grad(weight), alpha=cfg.gram_weight)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cfg.uses_transport and step % cfg.glt_interval == 0:
            for weight in ffn:
                transport_(weight)
            transports += 1
        train_seconds += time.perf_counter() - start
        losses.append(float(loss.detach()))
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
        if step % cfg.eval_interval == 0 or step == cfg.num_steps:
            start = time.perf_counter()
            final = evaluate(model, val_blocks, device, detail=step == cfg.num_steps)
            eval_seconds += time.perf_counter() - start
            _record(trajectory, step, final, float(np.mean(losses)), train_seconds)
            losses = []
    return {
        "method": cfg.method,
        "initial": initial,
        "final": final,
        "trajectory": trajectory,
        "transports": transports,
        "timing": {
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "seconds_per_100_steps": 100 * train_seconds / max(cfg.num_steps, 1),
        },
    }


# --- comparison ---------------------------------------------------------------------------------


def _change(final: float | None, initial: float | None) -> float | None:
    if final is None or initial is None or not math.isfinite(initial) or initial == 0:
        return None
    return (final - initial) / initial


def summarise(results: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Every run against the unmodified baseline: final values and relative changes."""
    runs = {}
    for run, result in results.items():
        final = result["final"]
        runs[run] = {
            "method": result["method"],
            "steps": result["trajectory"]["steps"][-1],
            "transports": result.get("transports", 0),
            **{f"final_{k}": final[k] for k in METRICS},
            **{f"{k}_change": _change(final[k], baseline[k]) for k in METRICS},
            "conditioning_improved": final["conditioning"] < baseline["conditioning"],
            "perplexity_improved": final["perplexity"] < baseline["perplexity"],
            "seconds_per_100_steps": result["timing"]["seconds_per_100_steps"],
        }
    best = lambda key: min(runs, key=lambda r: runs[r][key]) if runs else None  # noqa: E731
    return {
        "baseline": {k: baseline[k] for k in METRICS},
        "runs": runs,
        "lowest_conditioning": best("final_conditioning"),
        "lowest_perplexity": best("final_perplexity"),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(change: float | None) -> str:
    return "n/a" if change is None else f"x{change + 1:.3g}"


def comparison_table(summary: Mapping[str, Any]) -> str:
    """The comparison table the original's compare_retrofit_results.py printed, from summary.json."""
    base = summary["baseline"]
    columns = f"{'method':<11}{'steps':>6}{'FFN Gram cond':>15}{'change':>9}{'act. cov cond':>15}{'val PPL':>11}{'PPL ratio':>11}{'s/100 steps':>13}"
    rows = [columns, "-" * len(columns),
            f"{'baseline':<11}{0:>6}{_fmt(base['conditioning'], ',.1f'):>15}{'':>9}"
            f"{_fmt(base['activation_conditioning'], '.3g'):>15}{_fmt(base['perplexity'], '.2f'):>11}{'':>11}{'':>13}"]
    for run, row in summary["runs"].items():
        rows.append(
            f"{run:<11}{row['steps']:>6}{_fmt(row['final_conditioning'], ',.1f'):>15}"
            f"{_fmt(row['conditioning_change'], '+.1%'):>9}{_fmt(row['final_activation_conditioning'], '.3g'):>15}"
            f"{_fmt(row['final_perplexity'], '.4g'):>11}{_ratio(row['perplexity_change']):>11}"
            f"{_fmt(row['seconds_per_100_steps'], '.0f'):>13}"
        )
    rows.append("change and ratio are against the unmodified baseline; "
                f"lowest conditioning: {summary['lowest_conditioning']}; lowest perplexity: {summary['lowest_perplexity']}")
    return "\n".join(rows)


def load_results(folder: str | Path) -> tuple[dict[str, dict], dict]:
    """The runs' JSON files in `folder` and the baseline measurement."""
    from weightlab.io import read_json

    folder = Path(folder)
    results = {run: read_json(folder / f"{run}.json") for run in RUNS if (folder / f"{run}.json").is_file()}
    if not results:
        raise InputError(f"no retrofit results ({', '.join(f'{r}.json' for r in RUNS)}) in {folder}; run the workflow first.")
    baseline = read_json(folder / "baseline.json")["initial"] if (folder / "baseline.json").is_file() else next(iter(results.values()))["initial"]
    return results, baseline


def trajectory_figure(results: Mapping[str, Mapping[str, Any]]) -> Any:
    """Conditioning (weights and activations), perplexity and loss against steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"conditioning": "FFN weight Gram conditioning (mean)", "activation_conditioning": "FFN input covariance conditioning (mean)",
              "perplexity": "validation perplexity", "loss": "validation loss"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, key in zip(axes.flat, METRICS):
        for run, result in results.items():
            trajectory = result["trajectory"]
            points = [(s, v) for s, v in zip(trajectory["steps"], trajectory[key]) if v is not None and math.isfinite(v)]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=run)
        ax.set_title(titles[key])
        ax.set_xlabel("step")
        if key != "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightlab.retrofit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="print the comparison table of a results folder")
    compare.add_argument("folder", nargs="?", default="results/retrofit")
    args = parser.parse_args(argv)
    from weightlab.errors import WeightlabError

    try:
        results, baseline = load_results(args.folder)
    except WeightlabError as err:
        print(f"weightlab error: {err}", file=sys.stderr)
        return 1
    print(comparison_table(summarise(results, baseline)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
