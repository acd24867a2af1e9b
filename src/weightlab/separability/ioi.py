"""Experiment B: name-mover ablation and compensation on indirect object identification (IOI).

The original (Mat-Tom-Son/LostInSubSpace, ``clean_audit/experiments/exp_b_repair.py``) ablates
GPT-2 small's name movers (9.9, 9.6, 10.0) and a control head (2.3) and reads "compensation" as a
rise of the late residual norms. Its prompts are all-zero token ids with random answers and its
ablation hook never runs. Here:

- **Prompts** (`weightlab.separability.prompts`): real IOI sentences, ABBA and BABA, single-token
  names of one token length, and the ABC reference set (see that module).
- **Direct logit attribution** (`run_ioi`, `direct_effects`): the final residual stream at the
  last position is a sum of components (embedding, every head's output ``z_h @ W_O[h]`` from
  ``blocks.L.attn.hook_z``, every attention bias, every MLP output). Through the final norm its
  contribution to the logit difference is ``w · P(c) / s`` with ``w = γ ⊙ (W_U[IO] − W_U[S])``,
  ``P`` the norm's centring (identity for RMSNorm) and ``s`` the norm's scale
  (``ln_final.hook_scale``). Dividing each component by the scale *of the clean run* is the
  standard approximation of direct logit attribution (the scale depends on every component, so a
  component's effect is not exactly separable); with the scale frozen the components plus the
  constant ``β · u + b_U`` add up exactly to the logit difference, which `run_ioi` checks.
- **Heads** (`find_heads`): name movers = the `n_name_movers` heads with the largest mean
  attribution on the model in use (never hard-coded); the `random` control = `n_random_heads` seeded
  random heads among all heads that are not name movers.
- **Ablation** (`weightlab.separability.ablation`): `mean`, `zero` or `resample` of the chosen
  heads' slice of ``blocks.L.attn.hook_z`` (see that module).
- **Compensation and self-repair** (`compensation`, `self_repair_decomposition`): per head, the
  direct effect after ablation over before (clean final-norm scale in both, so the ratio measures
  what the head writes, not the renormalisation); `late_compensation` sums the heads of the *late
  layers*, the layers after the first ablated head's layer (the heads downstream of an ablated
  head; the ablated heads themselves left out). A ratio is hard to read when the clean sum is
  negative (negative heads that back off give a ratio below 1 while they raise the logit
  difference), so `late_compensation_delta` (after − before, in logits) is reported beside it. The decomposition of Rushing & Nanda
  (2024, "Explorations of Self-Repair in Language Models"): the ablated heads' direct effect
  predicts a change of the logit difference; the actual change differs by the change of the
  downstream heads' and MLPs' direct effects and the change of the final norm's scale, and the
  parts add up to the actual change (``unexplained`` is the float residue). `recovered_fraction`
  (total − direct) / (−direct) is the self-repair measure reported (`selfrepair`); criterion B1
  reads the original's amplitude measure, the late layers' residual-norm ratio at the final
  position (`late_final_position_norm_ratio`, with a bootstrap interval over prompts).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from weightlab.errors import InputError
from weightlab.separability.ablation import ABLATIONS, Head, ablation_hooks, ablation_values, per_head, z_hook_name
from weightlab.separability.observables import a_param, layer_observables, routing_plasticity
from weightlab.separability.prompts import IOIDataset
from weightlab.separability.selfrepair import choose_random_heads, final_position_norm_ratio, mean_interval, recovered_fraction

CONDITIONS = ("baseline", "critical", "random")
BATCH = 32  # prompts per forward pass


# --- one run: logit difference and the direct effects of every component ------------------------


@dataclass
class RunRecord:
    """One forward pass over the dataset: logit differences and, per component, its projection on
    the readout direction at the final position (divide by a final-norm scale for its effect)."""

    logit_diff: torch.Tensor  # [n] actual logit(IO) - logit(S)
    io_top1: torch.Tensor  # [n] bool: IO is the arg-max over the vocabulary
    scale: torch.Tensor  # [n] final-norm scale at the last position
    embed: torch.Tensor  # [n] embedding (+ positions) . w
    heads: torch.Tensor  # [n, layers, heads] head output . w
    attn_bias: torch.Tensor  # [n, layers] attention output minus the sum of its heads (b_O) . w
    mlps: torch.Tensor  # [n, layers] MLP output . w
    constant: torch.Tensor  # [n] beta . u + b_U[IO] - b_U[S]
    layer_observables: dict[str, float]  # A_activation_L<i>, sigma_sq_L<i> over all positions
    patterns: torch.Tensor | None = None  # [layers, n, heads, q, k] attention, when kept
    final_norms: torch.Tensor | None = None  # [n, layers] ‖resid_post‖ at the final position

    def total(self) -> torch.Tensor:
        """The final residual's projection (sum of every component)."""
        return self.embed + self.heads.sum((1, 2)) + self.attn_bias.sum(1) + self.mlps.sum(1)

    def reconstructed(self, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Logit difference from the components, with this run's scale (exact) or another one."""
        return self.total() / (self.scale if scale is None else scale) + self.constant


def _final_norm(bridge: Any) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """(gamma, beta or None, centres?) of the final norm: LayerNorm centres, RMSNorm does not."""
    module = bridge.ln_final.original_component
    kind = str(getattr(bridge.cfg, "normalization_type", "") or "")
    centres = kind.startswith("LN") if kind else isinstance(module, torch.nn.LayerNorm)
    bias = getattr(module, "bias", None)
    return module.weight.detach(), None if bias is None else bias.detach(), centres


def readout(bridge: Any, io_ids: torch.Tensor, s_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prompt, the direction w ([n, d_model]) whose dot product with a residual component,
    divided by the final-norm scale, is that component's direct effect on logit(IO) − logit(S),
    and the constant ([n]) from the norm's bias and the unembedding's bias."""
    unembed = bridge.unembed.original_component
    gamma, beta, centres = _final_norm(bridge)
    u = unembed.weight[io_ids].detach() - unembed.weight[s_ids].detach()  # [n, d_model]
    w = u * gamma
    if centres:  # w . (c - mean c) == (w - mean w) . c
        w = w - w.mean(-1, keepdim=True)
    constant = torch.zeros(len(io_ids), dtype=w.dtype, device=w.device)
    if beta is not None:
        constant = constant + u @ beta
    if getattr(unembed, "bias", None) is not None:
        constant = constant + unembed.bias[io_ids].detach() - unembed.bias[s_ids].detach()
    return w, constant


def _recorder(store: dict[str, torch.Tensor]) -> Callable[..., Callable[[torch.Tensor, Any], None]]:
    """`keep(name, last_only=True)` makes a hook that stores its activation (the final position
    only, or all of it) in `store` under `name`."""

    def keep(name: str, last_only: bool = True) -> Callable[[torch.Tensor, Any], None]:
        def hook(t: torch.Tensor, hook: Any = None) -> None:
            store[name] = (t[:, -1] if last_only else t).detach()

        return hook

    return keep


@torch.no_grad()
def run_ioi(
    bridge: Any, tokens: torch.Tensor, io_ids: torch.Tensor, s_ids: torch.Tensor,
    ablations: Mapping[Head, torch.Tensor | None] | None = None, keep_patterns: bool = False,
    batch_size: int = BATCH, desc: str | None = None, check: float | None = 1e-3,
) -> RunRecord:
    """Run the bridge over `tokens` (optionally with heads ablated) and record every component's
    projection on the readout direction at the final position. With `check`, raise if the
    components do not add up to the logit difference within `check` (a wrong readout)."""
    cfg = bridge.cfg
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    device = next(bridge.parameters()).device
    w_all, const_all = readout(bridge, io_ids.to(device), s_ids.to(device))
    w_o = [bridge.blocks[layer].attn.W_O.detach() for layer in range(n_layers)]  # [heads, d_head, d_model]
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("ld", "top1", "scale", "embed", "heads", "bias", "mlps")}
    resid: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
    patterns: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
    n = tokens.shape[0]
    for start in tqdm(range(0, n, batch_size), desc=desc, file=sys.stderr, mininterval=5, ascii=True, disable=desc is None):
        rows = slice(start, min(start + batch_size, n))
        store: dict[str, torch.Tensor] = {}
        keep = _recorder(store)
        hooks = list(ablation_hooks(ablations, n_heads, rows)) if ablations else []
        hooks += [("blocks.0.hook_resid_pre", keep("embed")), ("ln_final.hook_scale", keep("scale"))]
        for layer in range(n_layers):
            hooks += [(z_hook_name(layer), keep(f"z{layer}")), (f"blocks.{layer}.hook_attn_out", keep(f"attn{layer}")),
                      (f"blocks.{layer}.hook_mlp_out", keep(f"mlp{layer}")),
                      (f"blocks.{layer}.hook_resid_post", keep(f"resid{layer}", last_only=False))]
            if keep_patterns:
                hooks.append((f"blocks.{layer}.attn.hook_pattern", keep(f"pattern{layer}", last_only=False)))
        with bridge.hooks(fwd_hooks=hooks):
            logits = bridge(tokens[rows].to(device))[:, -1].float()
        io, s = io_ids[rows].to(device), s_ids[rows].to(device)
        batch = torch.arange(logits.shape[0], device=device)
        w = w_all[rows]
        parts["ld"].append(logits[batch, io] - logits[batch, s])
        parts["top1"].append(logits.argmax(-1) == io)
        parts["scale"].append(store["scale"].reshape(-1).float())
        parts["embed"].append((store["embed"] * w).sum(-1))
        heads, bias, mlps = [], [], []
        for layer in range(n_layers):
            z = store[f"z{layer}"].reshape(-1, n_heads, w_o[layer].shape[1])  # [b, heads, d_head]
            out = torch.einsum("bhd,hdm->bhm", z, w_o[layer])  # each head's output
            heads.append((out * w[:, None]).sum(-1))
            bias.append(((store[f"attn{layer}"] - out.sum(1)) * w).sum(-1))
            mlps.append((store[f"mlp{layer}"] * w).sum(-1))
            resid[layer].append(store[f"resid{layer}"].cpu())
            if keep_patterns:
                patterns[layer].append(store[f"pattern{layer}"].cpu())
        parts["heads"].append(torch.stack(heads, 1))
        parts["bias"].append(torch.stack(bias, 1))
        parts["mlps"].append(torch.stack(mlps, 1))
    cat = {k: torch.cat(v).double().cpu() if k != "top1" else torch.cat(v).cpu() for k, v in parts.items()}
    record = RunRecord(
        cat["ld"], cat["top1"], cat["scale"], cat["embed"], cat["heads"], cat["bias"], cat["mlps"], const_all.double().cpu(),
        layer_observables([torch.cat(r) for r in resid]),
        torch.stack([torch.cat(p) for p in patterns]) if keep_patterns else None,
        torch.stack([torch.cat(r)[:, -1].double().norm(dim=-1) for r in resid], dim=1),
    )
    if check is not None:
        error = float((record.reconstructed() - record.logit_diff).abs().max())
        if error > check * max(1.0, float(record.logit_diff.abs().max())):
            raise InputError(f"direct logit attribution does not add up (max error {error:.2e}); the bridge's "
                             "hooks or the final norm differ from what weightlab.separability.ioi assumes.")
    return record


@torch.no_grad()
def capture_z(bridge: Any, tokens: torch.Tensor, layers: Iterable[int], batch_size: int = BATCH) -> dict[int, torch.Tensor]:
    """hook_z ([n, pos, head, d_head]) of `layers` on `tokens`, stopping after the last of them."""
    layers = sorted(set(layers))
    n_heads = int(bridge.cfg.n_heads)
    device = next(bridge.parameters()).device
    found: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, tokens.shape[0], batch_size):
        def grab(layer: int) -> Callable[[torch.Tensor, Any], None]:
            def hook(z: torch.Tensor, hook: Any = None) -> None:
                found[layer].append(per_head(z, n_heads).detach().cpu())
            return hook

        with bridge.hooks(fwd_hooks=[(z_hook_name(layer), grab(layer)) for layer in layers]):
            bridge(tokens[start:start + batch_size].to(device), stop_at_layer=layers[-1] + 1)
    return {layer: torch.cat(parts) for layer, parts in found.items()}


# --- analysis of records (pure tensor functions) -------------------------------------------------


def direct_effects(record: RunRecord, scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean direct effects on the logit difference (over prompts), each component divided by
    `scale` (default: the run's own final-norm scale): heads [layers, heads], mlps [layers],
    attn_bias [layers], embed and constant (scalars)."""
    s = record.scale if scale is None else scale
    return {
        "heads": (record.heads / s[:, None, None]).mean(0),
        "mlps": (record.mlps / s[:, None]).mean(0),
        "attn_bias": (record.attn_bias / s[:, None]).mean(0),
        "embed": (record.embed / s).mean(),
        "constant": record.constant.mean(),
    }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _table(matrix: torch.Tensor) -> list[list[float | None]]:
    return [[_finite(v) for v in row] for row in matrix.tolist()]


def choose_heads(attribution: torch.Tensor, n_name_movers: int, n_random: int, seed: int) -> dict[str, Any]:
    """Name movers = the `n_name_movers` heads of largest attribution ([layers, heads]); the random
    control = `n_random` seeded random heads from all the others (`selfrepair.choose_random_heads`)."""
    n_layers, n_heads = attribution.shape
    flat = attribution.flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    movers = [Head(int(i) // n_heads, int(i) % n_heads) for i in order[:n_name_movers]]
    try:
        picks = choose_random_heads(n_layers, n_heads, [(h.layer, h.head) for h in movers], n_random, seed)
    except ValueError as error:
        raise InputError(f"separability.exp_b.n_random_heads: {error}.") from error
    return {"name_movers": movers, "random_heads": [Head(layer, head) for layer, head in picks],
            "pool_size": n_layers * n_heads - len(movers)}


def late_layers(ablated: Sequence[Head], n_layers: int) -> list[int]:
    """The late layers of an ablation: every layer after the *first* ablated head's layer, i.e. the
    layers downstream of an ablated head (the same set as the decomposition's downstream heads;
    the ablated heads themselves are left out of every sum). The original's "layers 10-12" for
    name movers in layers 9 and 10 is this set; "after the last ablated layer" would be empty
    whenever a name mover sits in the final layer."""
    return list(range(min(h.layer for h in ablated) + 1, n_layers)) if ablated else []


def _ratio(after: float, before: float, floor: float) -> float | None:
    return after / before if abs(before) >= floor else None


def compensation(clean: RunRecord, ablated: RunRecord, ablated_heads: Sequence[Head], floor: float,
                 late: Sequence[int] | None = None) -> dict[str, Any]:
    """Per head, mean direct effect after ablation / before (both with the clean run's final-norm
    scale); None for the ablated heads and where |before| < `floor` logits. `late_compensation`
    = sum over the heads of the late layers (default: after the last ablated head's layer) of the
    direct effect after / before (None if |before| < floor or no late layer)."""
    before = direct_effects(clean)["heads"]
    after = direct_effects(ablated, clean.scale)["heads"]
    n_layers, n_heads = before.shape
    matrix = [[None if Head(layer, head) in ablated_heads else _ratio(float(after[layer, head]), float(before[layer, head]), floor)
               for head in range(n_heads)] for layer in range(n_layers)]
    late = late_layers(ablated_heads, n_layers) if late is None else list(late)
    in_late = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    in_late[late] = True
    for h in ablated_heads:
        in_late[h.layer, h.head] = False
    late_before, late_after = float(before[in_late].sum()), float(after[in_late].sum())
    return {
        "matrix": matrix,
        "direct_effect_before": _table(before),
        "direct_effect_after": _table(after),
        "floor": floor,
        "late_layers": late,
        "late_direct_effect_before": late_before,
        "late_direct_effect_after": late_after,
        "late_compensation": _ratio(late_after, late_before, floor) if late else None,
        "late_compensation_delta": late_after - late_before if late else None,
    }


def self_repair_decomposition(clean: RunRecord, ablated: RunRecord, ablated_heads: Sequence[Head]) -> dict[str, Any]:
    """Rushing & Nanda (2024): split the change of the mean logit difference into

    - ``direct``: the ablated heads' own direct effect change (what the ablation predicts);
    - ``heads``: the change of the downstream heads' direct effects (layers after the first
      ablated head's layer, ablated heads excluded);
    - ``mlps``: the change of the downstream MLPs' direct effects (the first ablated layer's MLP on);
    - ``norm``: the change from the final norm's scale, ``Σ_c c_ablated · w (1/s_ablated − 1/s_clean)``;
    - ``other``: everything else (embedding, upstream and same-layer heads and MLPs, biases),
      which an ablation cannot change, so it should be 0;

    all component changes with the clean scale frozen. ``total`` is the actual change of the
    logit difference; ``unexplained`` = total − the sum of the parts (float error only);
    ``self_repair`` = total − direct."""
    s0 = clean.scale
    n_layers, n_heads = clean.heads.shape[1:]
    d_heads = ((ablated.heads - clean.heads) / s0[:, None, None]).mean(0)
    d_mlps = ((ablated.mlps - clean.mlps) / s0[:, None]).mean(0)
    d_bias = ((ablated.attn_bias - clean.attn_bias) / s0[:, None]).mean(0)
    first = min((h.layer for h in ablated_heads), default=n_layers)
    is_ablated = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for h in ablated_heads:
        is_ablated[h.layer, h.head] = True
    downstream = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    downstream[first + 1:] = True
    downstream &= ~is_ablated
    parts = {
        "direct": float(d_heads[is_ablated].sum()),
        "heads": float(d_heads[downstream].sum()),
        "mlps": float(d_mlps[first:].sum()),
        "norm": float((ablated.total() * (1 / ablated.scale - 1 / s0)).mean()),
        "other": float(d_heads[~is_ablated & ~downstream].sum() + d_mlps[:first].sum() + d_bias.sum()
                       + ((ablated.embed - clean.embed) / s0).mean() + (ablated.constant - clean.constant).mean()),
    }
    total = float((ablated.logit_diff - clean.logit_diff).mean())
    return {
        **parts,
        "total": total,
        "predicted": parts["direct"],
        "self_repair": total - parts["direct"],
        "unexplained": total - sum(parts.values()),
        "definition": "total = direct + heads + mlps + norm + other + unexplained; component changes use the clean "
                      "final-norm scale; norm = change from the final norm's scale; downstream = after the first ablated head",
    }


# --- the experiment: heads, then one condition ---------------------------------------------------


def _heads_json(heads: Sequence[Head], attribution: torch.Tensor) -> list[dict[str, Any]]:
    return [{"layer": h.layer, "head": h.head, "name": h.name, "attribution": float(attribution[h.layer, h.head])} for h in heads]


def find_heads(bridge: Any, dataset: IOIDataset, settings: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Direct logit attribution of every head on the clean prompts, the name movers and the
    random control head: the content of the heads file."""
    record = run_ioi(bridge, dataset.tokens, dataset.io_ids, dataset.s_ids, desc="ioi heads")
    effects = direct_effects(record)
    attribution = effects["heads"]
    spread = (record.heads / record.scale[:, None, None]).std(0)
    chosen = choose_heads(attribution, int(settings["n_name_movers"]), int(settings["n_random_heads"]), seed)
    n_layers, n_heads = attribution.shape
    table = sorted(
        ({"layer": layer, "head": head, "name": f"{layer}.{head}", "attribution": float(attribution[layer, head]),
          "std": float(spread[layer, head])} for layer in range(n_layers) for head in range(n_heads)),
        key=lambda row: -row["attribution"],
    )
    return {
        "prompts": dataset.to_json(),
        "clean_logit_diff": float(record.logit_diff.mean()),
        "clean_logit_diff_std": float(record.logit_diff.std()),
        "io_over_s_rate": float((record.logit_diff > 0).double().mean()),
        "io_top1_accuracy": float(record.io_top1.double().mean()),
        "attribution": {
            "method": "mean over prompts of (head output z_h W_O[h] at the final position) . gamma*(W_U[IO]-W_U[S]) "
                      "(centred for LayerNorm) / the clean run's final-norm scale",
            "matrix": _table(attribution),
            "table": table,
            "mlps": [float(v) for v in effects["mlps"]],
            "embed": float(effects["embed"]),
            "constant": float(effects["constant"]),
            "attn_bias": float(effects["attn_bias"].sum()),
        },
        "name_movers": _heads_json(chosen["name_movers"], attribution),
        "random_heads": _heads_json(chosen["random_heads"], attribution),
        "random_head_rule": {"drawn_from": "every head that is not a name mover", "n": len(chosen["random_heads"]),
                             "pool_size": chosen["pool_size"], "seed": seed},
    }


def condition_heads(condition: str, heads_doc: Mapping[str, Any]) -> list[Head]:
    """The heads a condition ablates: none, the name movers, or the random control heads."""
    if condition == "baseline":
        return []
    if condition == "critical":
        return [Head.parse(h) for h in heads_doc["name_movers"]]
    if condition == "random":
        return [Head.parse(h) for h in heads_doc["random_heads"]]
    raise InputError(f"unknown IOI condition '{condition}'; use one of {', '.join(CONDITIONS)}.")


def _value_weights(bridge: Any) -> list[torch.Tensor]:
    return [block.attn.W_V.detach() for block in bridge.blocks]


def run_condition(
    bridge: Any, dataset: IOIDataset, condition: str, heads_doc: Mapping[str, Any], settings: Mapping[str, Any], seed: int,
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """One condition: the clean run, the ablated run (the clean run again for `baseline`), and
    (metrics for step 0, summary) of the audit log."""
    method = str(settings["ablation"])
    if method not in ABLATIONS:
        raise InputError(f"unknown ablation '{method}'; use one of {', '.join(ABLATIONS)}.")
    floor = float(settings["compensation_floor"])
    ablated_heads = condition_heads(condition, heads_doc)
    n_layers = int(bridge.cfg.n_layers)
    clean = run_ioi(bridge, dataset.tokens, dataset.io_ids, dataset.s_ids, keep_patterns=True, desc=f"{condition} clean")
    if ablated_heads:
        corrupted = capture_z(bridge, dataset.corrupted_tokens, [h.layer for h in ablated_heads]) if method != "zero" else {}
        generator = torch.Generator().manual_seed(seed)
        values = {h: ablation_values(method, corrupted[h.layer][:, :, h.head] if corrupted else None, dataset.templates, generator)
                  for h in ablated_heads}
        ablated = run_ioi(bridge, dataset.tokens, dataset.io_ids, dataset.s_ids, values, keep_patterns=True, desc=f"{condition} ablated")
        late = None
    else:
        ablated = clean
        late = late_layers(condition_heads("critical", heads_doc), n_layers)  # the critical condition's late layers, for reference
    comp = compensation(clean, ablated, ablated_heads, floor, late)
    decomposition = self_repair_decomposition(clean, ablated, ablated_heads)
    resid_ratio = [ablated.layer_observables[f"A_activation_L{i}"] / clean.layer_observables[f"A_activation_L{i}"] for i in range(n_layers)]
    late_resid = float(np.mean([resid_ratio[i] for i in comp["late_layers"]])) if comp["late_layers"] else None
    final_ratio = (ablated.final_norms / clean.final_norms).mean(0).tolist()  # per layer, at the final position
    late_final = mean_interval(final_position_norm_ratio(clean.final_norms.numpy(), ablated.final_norms.numpy(), comp["late_layers"]),
                               seed=seed)
    recovered = recovered_fraction(decomposition["total"], decomposition["direct"], floor) if ablated_heads else None
    gamma = _final_norm(bridge)[0]
    psi_clean, psi = float(clean.logit_diff.mean()), float(ablated.logit_diff.mean())
    metrics: dict[str, float | None] = {
        "psi_logit_diff": psi,
        "psi_logit_diff_clean": psi_clean,
        "delta_logit_diff": psi - psi_clean,
        "io_over_s_rate": float((ablated.logit_diff > 0).double().mean()),
        "io_top1_accuracy": float(ablated.io_top1.double().mean()),
        "G": routing_plasticity(clean.patterns, ablated.patterns),
        "A_learned": float(gamma.double().mean()),
        "A_param": a_param(_value_weights(bridge)),
        "late_compensation": comp["late_compensation"],
        "late_compensation_delta": comp["late_compensation_delta"],
        "late_residual_norm_ratio": late_resid,
        "late_final_position_norm_ratio": late_final["mean"],
        "recovered_fraction": recovered,
        "self_repair": decomposition["self_repair"],
        "norm_scale_ratio": float((ablated.scale / clean.scale).mean()),
        **ablated.layer_observables,
        **{f"residual_norm_ratio_L{i}": r for i, r in enumerate(resid_ratio)},
    }
    summary = {
        "condition": condition,
        "clean_logit_diff": psi_clean,
        "ablated_logit_diff": psi,
        "delta_logit_diff": psi - psi_clean,
        "ablated_heads": [h.name for h in ablated_heads],
        "ablation": method if ablated_heads else None,
        "n_examples": len(dataset),
        "compensation": comp["matrix"],
        "compensation_floor": floor,
        "late_layers": comp["late_layers"],
        "late_layers_definition": ("layers after the first ablated head's layer, ablated heads left out" if ablated_heads
                                   else "the critical condition's late layers (no ablation: ratio 1 by construction)"),
        "late_compensation": comp["late_compensation"],
        "late_compensation_delta": comp["late_compensation_delta"],
        "late_direct_effect_before": comp["late_direct_effect_before"],
        "late_direct_effect_after": comp["late_direct_effect_after"],
        "direct_effect_before": comp["direct_effect_before"],
        "direct_effect_after": comp["direct_effect_after"],
        "mlp_direct_effect_before": [float(v) for v in direct_effects(clean)["mlps"]],
        "mlp_direct_effect_after": [float(v) for v in direct_effects(ablated, clean.scale)["mlps"]],
        "decomposition": decomposition,
        "residual_norm_ratio": resid_ratio,
        "late_residual_norm_ratio": late_resid,
        "residual_norm_ratio_definition": "residual_norm_ratio: mean token norm after / before over all positions, per layer; "
                                          "final_position_norm_ratio: per layer, mean over prompts of the final position's "
                                          "norm after / before (the original's measure, B1)",
        "final_position_norm_ratio": final_ratio,
        "late_final_position_norm_ratio": late_final["mean"],
        "late_final_position_norm_ratio_ci95": late_final["ci95"],
        "late_final_position_norm_ratio_interval": late_final,
        "recovered_fraction": recovered,
        "recovered_fraction_definition": "(total change - direct change) / (-direct change) of the mean logit difference, "
                                         "direct = the ablated heads' own direct effect change (Rushing & Nanda 2024); "
                                         f"None when |direct| < {floor}",
        "G_definition": "1 - mean Jensen-Shannon divergence (bits) between the clean and the ablated run's attention patterns",
        "attribution_error": float((ablated.reconstructed() - ablated.logit_diff).abs().max()),
    }
    return metrics, summary
