"""Neuron groups from SNIP neuron scores, and the controls they are compared with.

A group maps a module's canonical name to row indices (`Group`). Selection is per module, as in
Wei et al. (2024) and the original study (top-k per layer), so every module contributes in
proportion to its size and score scales of different module types are never compared:

- ``snip_top``: the top `snip_top_k` of each module's neurons by safety score;
- ``set_diff``: the top `set_diff_q` by safety score that are not in the top `set_diff_p` by
  utility score (Wei et al.'s set difference, on neurons);
- ``utility``: the top `utility_top_k` by utility score;
- ``random``: `random_k` of all neurons, uniformly (seeded): the population baseline;
- ``random_matched``: random neurons outside both safety groups with, per module, as many
  neurons as the larger safety group has there, stored in random order. Its module-wise prefix
  with a safety group's counts (`matched_control`) is a uniform random sample with exactly that
  group's per-module counts: the control that makes the comparison fair for either safety group.

Files hold ids only (`group_to_json`).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from weightlab.drift.design import GROUPS, SAFETY_GROUPS
from weightlab.drift.snip import check_same_modules, module_layer, module_type
from weightlab.errors import InputError
from weightlab.io import read_json

Group = dict[str, np.ndarray]  # module name -> row indices (int64)


def _check_fraction(name: str, value: float) -> None:
    if not 0 < value <= 1:
        raise InputError(f"{name} must be a fraction in (0, 1], got {value}.")


def top_count(n: int, fraction: float) -> int:
    """How many of a module's `n` neurons a top `fraction` takes: floor(fraction * n), at least 1."""
    return min(n, max(1, math.floor(fraction * n + 1e-9)))


def top_rows(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Rows of the `top_count` highest scores (ties broken by lower row index), sorted."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.sort(order[: top_count(len(scores), fraction)]).astype(np.int64)


def top_fraction(scores: Mapping[str, np.ndarray], fraction: float) -> Group:
    """The top `fraction` of each module's neurons by score."""
    _check_fraction("the top fraction", fraction)
    return {name: top_rows(values, fraction) for name, values in scores.items()}


def set_difference(safety: Mapping[str, np.ndarray], utility: Mapping[str, np.ndarray], p: float, q: float) -> Group:
    """Per module: the top-q safety neurons that are not among the top-p utility neurons."""
    _check_fraction("set_diff_p", p)
    _check_fraction("set_diff_q", q)
    check_same_modules(safety, utility)
    return {name: np.setdiff1d(top_rows(safety[name], q), top_rows(utility[name], p)).astype(np.int64) for name in safety}


def module_sizes(scores: Mapping[str, np.ndarray]) -> dict[str, int]:
    return {name: len(values) for name, values in scores.items()}


def random_group(sizes: Mapping[str, int], fraction: float, rng: np.random.Generator) -> Group:
    """round(fraction * all neurons) neurons drawn uniformly without replacement from all modules."""
    _check_fraction("random_k", fraction)
    names = list(sizes)
    offsets = np.cumsum([0] + [sizes[n] for n in names])
    total = int(offsets[-1])
    picked = np.sort(rng.choice(total, size=max(1, round(fraction * total)), replace=False))
    module_index = np.searchsorted(offsets, picked, side="right") - 1
    return {name: (picked[module_index == i] - offsets[i]).astype(np.int64) for i, name in enumerate(names)}


def random_matched(sizes: Mapping[str, int], references: Sequence[Group], rng: np.random.Generator) -> Group:
    """Per module, max over `references` of their counts there, drawn uniformly from the rows in
    none of them, in random order (so each module-wise prefix is itself a uniform sample)."""
    matched: Group = {}
    for name, n in sizes.items():
        want = max((len(ref.get(name, ())) for ref in references), default=0)
        taken = np.unique(np.concatenate([np.asarray(ref.get(name, []), dtype=np.int64) for ref in references] or [np.zeros(0, np.int64)]))
        free = np.setdiff1d(np.arange(n), taken)
        if want > len(free):
            raise InputError(f"module {name} has {len(free)} neurons outside the safety groups, fewer than the {want} a matched control needs; lower set_diff_q or snip_top_k.")
        matched[name] = rng.permutation(free)[:want].astype(np.int64)
    return matched


def matched_control(control: Group, group: Group) -> Group:
    """The module-wise prefix of `control` (a `random_matched` group) with `group`'s counts."""
    out: Group = {}
    for name, rows in group.items():
        pool = control.get(name, np.zeros(0, np.int64))
        if len(rows) > len(pool):
            raise InputError(f"random_matched has {len(pool)} neurons in {name}, fewer than the group's {len(rows)}; rebuild the neuron groups.")
        out[name] = np.asarray(pool[: len(rows)], dtype=np.int64)
    return out


def build_groups(safety: Mapping[str, np.ndarray], utility: Mapping[str, np.ndarray], snip_top_k: float = 0.01,
                 set_diff_p: float = 0.1, set_diff_q: float = 0.1, utility_top_k: float = 0.01, random_k: float = 0.01,
                 seed: int = 0) -> dict[str, Group]:
    """Every group of the study from the two neuron-score tables (see the module docstring)."""
    check_same_modules(safety, utility)
    sizes = module_sizes(safety)
    groups = {
        "snip_top": top_fraction(safety, snip_top_k),
        "set_diff": set_difference(safety, utility, set_diff_p, set_diff_q),
        "utility": top_fraction(utility, utility_top_k),
        "random": random_group(sizes, random_k, np.random.default_rng([seed, 11])),
    }
    groups["random_matched"] = random_matched(sizes, [groups[g] for g in SAFETY_GROUPS], np.random.default_rng([seed, 12]))
    return groups


# --- checks, restriction, description -----------------------------------------------------------


def count(group: Group) -> int:
    return int(sum(len(rows) for rows in group.values()))


def validate(group: Group, sizes: Mapping[str, int], name: str = "group") -> None:
    """Raise unless every module exists and every row is a distinct valid index."""
    for module, rows in group.items():
        if module not in sizes:
            raise InputError(f"{name} names module {module}, which the model does not have; rebuild the neuron groups for this model.")
        rows = np.asarray(rows)
        outside = rows[(rows < 0) | (rows >= sizes[module])] if len(rows) else rows
        if len(outside):
            raise InputError(f"{name} has rows {outside[:5].tolist()} outside {module} (rows 0..{sizes[module] - 1}); rebuild the neuron groups.")
        if len(np.unique(rows)) != len(rows):
            raise InputError(f"{name} repeats rows in {module}; rebuild the neuron groups.")


def overlap(a: Group, b: Group) -> int:
    """Neurons in both groups."""
    return int(sum(len(np.intersect1d(rows, b.get(name, []))) for name, rows in a.items()))


def restrict(group: Group, modules: Iterable[str]) -> Group:
    """The group's neurons in `modules` only (those LoRA trains)."""
    keep = set(modules)
    return {name: rows for name, rows in group.items() if name in keep}


def per_module_counts(group: Group) -> dict[str, int]:
    return {name: int(len(rows)) for name, rows in group.items() if len(rows)}


def spread(group: Group, sizes: Mapping[str, int]) -> dict[str, Any]:
    """How a group spreads over layers and module types: counts and the fraction of each
    layer's / type's neurons it holds."""
    by_layer: Counter[int] = Counter()
    by_type: Counter[str] = Counter()
    layer_size: Counter[int] = Counter()
    type_size: Counter[str] = Counter()
    for name, n in sizes.items():
        layer_size[module_layer(name)] += n
        type_size[module_type(name)] += n
    for name, rows in group.items():
        by_layer[module_layer(name)] += len(rows)
        by_type[module_type(name)] += len(rows)
    return {
        "count": count(group),
        "by_layer": {str(k): {"count": by_layer[k], "fraction": by_layer[k] / layer_size[k]} for k in sorted(layer_size)},
        "by_module_type": {k: {"count": by_type[k], "fraction": by_type[k] / type_size[k]} for k in type_size},
    }


def group_to_json(group: Group, name: str) -> dict[str, Any]:
    """The JSON content of a group file: ids only (module name -> rows)."""
    if name not in GROUPS:
        raise InputError(f"unknown neuron group '{name}'; choose from {GROUPS}.")
    return {"group": name, "count": count(group), "neurons": {m: [int(r) for r in rows] for m, rows in group.items() if len(rows)}}


def group_from_json(content: Mapping[str, Any]) -> Group:
    try:
        return {m: np.asarray(rows, dtype=np.int64) for m, rows in content["neurons"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"not a neuron-group file ({err}); re-run the neuron-group rule.") from err


def read_group(path: str | os.PathLike, sizes: Mapping[str, int]) -> tuple[str, Group]:
    """(name, group) of a neuron-group file, checked against the model's modules (`sizes`: module
    -> neurons): a known group name, integer ids, every module the model's and every row a distinct
    index inside it (a negative id is refused, not read from the end). Anything else is an
    InputError naming the file and the fix."""
    fix = f"delete {path} and re-run, Snakemake rebuilds the groups (rule drift_groups)"
    content = read_json(path)
    if not isinstance(content, dict) or content.get("group") not in GROUPS or not isinstance(content.get("neurons"), dict):
        raise InputError(f"{path} is not a neuron-group file (a 'group' of {', '.join(GROUPS)} and its 'neurons'); {fix}.")
    for module, rows in content["neurons"].items():
        if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in rows):
            raise InputError(f"{path}: the ids of {module} must be a list of integers; {fix}.")
    group = group_from_json(content)
    try:
        validate(group, sizes, name=str(path))
    except InputError as err:
        raise InputError(f"{str(err).split(';')[0]}; {fix}.") from err
    if content.get("count") != count(group):
        raise InputError(f"{path}: count {content.get('count')} but {count(group)} ids; {fix}.")
    return content["group"], group
