"""Edit sets for provable repair: test-set indices of the images a repair must classify correctly.

Three types, as in the original study: `misclassified` (any image the base model gets wrong),
`class_homogeneous_correct` and `class_homogeneous_incorrect` (correctly / wrongly classified
images of one target class). Sizing is flexible: when fewer candidates exist than requested,
all of them are taken and the actual size is recorded. Draws are seeded and nested: the set of
size 10 is the first 10 of the same shuffled candidates as the set of size 50.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightlab.errors import InputError
from weightlab.io import read_json

EDIT_SET_TYPES = ("misclassified", "class_homogeneous_correct", "class_homogeneous_incorrect")
CLASS_TYPES = ("class_homogeneous_correct", "class_homogeneous_incorrect")
SIZING_STRATEGY = "flexible"


@dataclass(frozen=True)
class EditSet:
    indices: np.ndarray  # sorted int64 indices into the test split
    set_type: str
    target_class: int | None
    requested_size: int
    available: int  # candidates of this type (and class) in the test split
    seed: int

    @property
    def actual_size(self) -> int:
        return len(self.indices)

    @property
    def focus(self) -> str:
        """What the base model does on the edit images: the original study's repair_set_focus."""
        return "correct_only" if self.set_type == "class_homogeneous_correct" else "incorrect_only"

    @property
    def name(self) -> str:
        return edit_set_name(self.set_type, self.target_class, self.requested_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "set_type": self.set_type, "target_class": self.target_class,
            "repair_set_focus": self.focus, "requested_size": self.requested_size,
            "actual_size": self.actual_size, "available": self.available,
            "sizing_strategy": SIZING_STRATEGY, "seed": self.seed, "indices": self.indices.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EditSet:
        try:
            return cls(
                np.asarray(data["indices"], dtype=np.int64), data["set_type"], data["target_class"],
                int(data["requested_size"]), int(data["available"]), int(data["seed"]),
            )
        except KeyError as err:
            raise InputError(f"edit set file lacks key {err}; re-run rule repair_editset.") from err


def read_edit_set(path: str | os.PathLike, labels: np.ndarray, predictions: np.ndarray) -> EditSet:
    """The edit set in `path`, checked against the test split it indexes (`labels`) and the base
    model's `predictions` on it: known type, integer indices inside the split (a negative index
    is refused, not read from the end), no repeats, the recorded size, and every image one of
    its type. Anything else is an InputError naming the file and the fix."""
    fix = f"delete {path} and re-run, Snakemake draws it again (rule repair_editset)"
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("indices"), list):
        raise InputError(f"{path} is not an edit set (no list 'indices'); {fix}.")
    raw = data["indices"]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise InputError(f"{path}: 'indices' must be integers; {fix}.")
    try:
        edit_set = EditSet.from_json(data)
    except (InputError, TypeError, ValueError) as err:
        raise InputError(f"{path} is not a complete edit set ({err}); {fix}.") from err
    indices, n = edit_set.indices, len(labels)
    outside = indices[(indices < 0) | (indices >= n)]
    if outside.size:
        raise InputError(f"{path}: indices {outside[:5].tolist()} are outside the test split (0..{n - 1}); {fix}.")
    if len(np.unique(indices)) != len(indices):
        raise InputError(f"{path}: 'indices' repeats images; {fix}.")
    if edit_set.set_type not in EDIT_SET_TYPES:
        raise InputError(f"{path}: unknown set_type {edit_set.set_type!r} (one of {', '.join(EDIT_SET_TYPES)}); {fix}.")
    if data.get("actual_size") != len(indices):
        raise InputError(f"{path}: actual_size {data.get('actual_size')} but {len(indices)} indices; {fix}.")
    strangers = np.setdiff1d(indices, candidates(edit_set.set_type, labels, predictions, edit_set.target_class))
    if strangers.size:
        raise InputError(f"{path}: test images {strangers[:5].tolist()} are not {edit_set.set_type} images of the base "
                         f"model{'' if edit_set.target_class is None else f' (class {edit_set.target_class})'}; {fix}.")
    return edit_set


def target_label(target_class: int | None) -> str:
    """'all' for sets that span classes, 'c3' for target class 3: the {target} of file names."""
    return "all" if target_class is None else f"c{target_class}"


def parse_target(label: str) -> int | None:
    if label == "all":
        return None
    if label.startswith("c") and label[1:].isdigit():
        return int(label[1:])
    raise InputError(f"edit-set target '{label}' is neither 'all' nor 'c<class>' (e.g. c3).")


def edit_set_name(set_type: str, target_class: int | None, size: int) -> str:
    """The experiment id: misclassified-all-n10, class_homogeneous_incorrect-c6-n50."""
    return f"{set_type}-{target_label(target_class)}-n{size}"


def check_request(set_type: str, target_class: int | None, num_classes: int) -> None:
    if set_type not in EDIT_SET_TYPES:
        raise InputError(f"unknown edit-set type '{set_type}'; choose one of {', '.join(EDIT_SET_TYPES)}.")
    if set_type in CLASS_TYPES and target_class is None:
        raise InputError(f"edit-set type {set_type} needs a target class (repair.target_classes).")
    if set_type not in CLASS_TYPES and target_class is not None:
        raise InputError(f"edit-set type {set_type} spans all classes; it takes no target class.")
    if target_class is not None and not 0 <= target_class < num_classes:
        raise InputError(f"target class {target_class} is outside 0..{num_classes - 1}.")


def candidates(set_type: str, labels: np.ndarray, predictions: np.ndarray, target_class: int | None = None) -> np.ndarray:
    """Indices of every test image that belongs to an edit set of this type (and class)."""
    check_request(set_type, target_class, int(max(labels.max(initial=0), predictions.max(initial=0))) + 1)
    correct = predictions == labels
    if set_type == "misclassified":
        mask = ~correct
    else:
        mask = (labels == target_class) & (correct if set_type == "class_homogeneous_correct" else ~correct)
    return np.flatnonzero(mask)


def draw_edit_set(
    set_type: str, size: int, labels: np.ndarray, predictions: np.ndarray, seed: int,
    target_class: int | None = None,
) -> EditSet:
    """A seeded draw of `size` candidates (all of them when fewer exist), nested across sizes."""
    if size < 1:
        raise InputError(f"edit-set size must be at least 1, got {size}.")
    if labels.shape != predictions.shape:
        raise InputError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape.")
    pool = candidates(set_type, labels, predictions, target_class)
    type_code = EDIT_SET_TYPES.index(set_type)
    rng = np.random.default_rng([seed, type_code, 0 if target_class is None else target_class + 1])
    chosen = np.sort(rng.permutation(pool)[:size]).astype(np.int64)
    return EditSet(chosen, set_type, target_class, size, len(pool), seed)


def experiment_names(set_types: Sequence[str], target_classes: Sequence[int], sizes: Sequence[int]) -> list[str]:
    """Every configured edit set's name: misclassified spans all classes, the other types one
    set per target class; each at every size."""
    names = []
    for set_type in set_types:
        targets: list[int | None] = list(target_classes) if set_type in CLASS_TYPES else [None]
        names += [edit_set_name(set_type, target, size) for target in targets for size in sizes]
    return names


def grid_order(record: Mapping[str, Any]) -> tuple[str, int, int]:
    """Sort key of a grid row: edit-set type, target class (none first), requested size."""
    target = record.get("target_class")
    return str(record["repair_set_type"]), -1 if target is None else int(target), int(record["requested_repair_set_size"])
