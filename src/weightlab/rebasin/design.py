"""The design of the Re-Basin study: model names, seeds, pairs and interpolation points.

Torch-free: the workflow reads it while parsing.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

GROUPS = ("A", "R")  # A: trained on env A (spurious patch); R: trained on env A+B (robust)
# The coloured-patch environments are drawn with seed + this offset, so that they do not share
# a random stream with the data subsample (which uses the global seed itself).
ENVIRONMENT_SEED_OFFSET = 101


def model_names(groups: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """'A1', 'A2', 'R1', 'R2' for groups (A, R) and seeds (1, 2)."""
    return [f"{group}{seed}" for group in groups for seed in seeds]


def training_seed(model: str, global_seed: int, shared_seed: bool = True) -> int:
    """Seed of a model's initialisation and data order. With shared_seed, A_s and R_s share it
    (the original study's design); otherwise R models are offset by 500."""
    offset = 0 if shared_seed or group_of(model) == "A" else 500
    return 1000 * global_seed + int(model[1:]) + offset


def model_pairs(seeds: Sequence[int], mode: str = "matched") -> list[tuple[str, str, str]]:
    """(reference, other, kind) pairs: every same-mechanism pair within A and within R, and
    different-mechanism pairs A_s-R_s ('matched') or every A-R combination ('all')."""
    pairs = [(f"{g}{s}", f"{g}{t}", "same") for g in GROUPS for s, t in itertools.combinations(seeds, 2)]
    if mode == "matched":
        pairs += [(f"A{s}", f"R{s}", "different") for s in seeds]
    elif mode == "all":
        pairs += [(f"A{s}", f"R{t}", "different") for s in seeds for t in seeds]
    else:
        raise ValueError(f"unknown pair mode '{mode}'; choose matched or all.")
    return pairs



def group_of(model: str) -> str:
    if model[:1] not in GROUPS:
        raise ValueError(f"model name '{model}' must start with one of {list(GROUPS)}.")
    return model[0]


def pair_key(ref: str, other: str) -> str:
    return f"{ref}-{other}"


def environment_seed(seed: int) -> int:
    """Seed of the patch colours of every environment."""
    return seed + ENVIRONMENT_SEED_OFFSET


def interpolation_alphas(num_alphas: int) -> list[float]:
    """`num_alphas` evenly spaced points in [0, 1], rounded so they read cleanly in JSON."""
    if num_alphas < 2:
        raise ValueError(f"rebasin.interpolation.num_alphas must be at least 2 (both endpoints), got {num_alphas}.")
    return np.linspace(0.0, 1.0, num_alphas).round(6).tolist()


def width_tag(multiplier: float) -> str:
    """How a width multiplier appears in paths ('0.5', '1', '1.5')."""
    return f"{float(multiplier):g}"


def scaled_model(model: Mapping[str, Any], multiplier: float) -> dict[str, Any]:
    """The model settings with `width` and `hidden` scaled by `multiplier` (rounded, at least 1)."""
    return {**model, **{key: max(1, round(model[key] * float(multiplier))) for key in ("width", "hidden") if key in model}}


def width_pair_file(multiplier: str, record: str, ref: str, other: str) -> str:
    """A pair's interpolation or alignment record at a width of the sweep (target rebasin_width):
    the main run's at multiplier 1, else under results/rebasin/width/x<multiplier>/."""
    if record not in ("interpolation", "alignment"):
        raise ValueError(f"record must be 'interpolation' or 'alignment', got {record!r}")
    root = "results/rebasin" if float(multiplier) == 1.0 else f"results/rebasin/width/x{width_tag(float(multiplier))}"
    return f"{root}/interpolation/{ref}_{other}.json" if record == "interpolation" else f"{root}/alignment/{other}_to_{ref}.json"
