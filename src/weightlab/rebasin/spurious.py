"""Coloured-patch environments and the Spurious Reliance Score.

Each class owns a patch colour. In an environment with alignment p, an image carries its own
class's colour with probability p and another class's colour (uniformly) otherwise; so in env A
(p=0.95) the colour predicts the label and in env B (p=0.05) it misleads. The robust models'
A+B mixture takes each image's env-B colour with probability `share_b`: the colour then names
the label with probability (1 - share_b) 0.95 + share_b 0.05, which is 0.5 for the even mixture
(still far above chance, 0.1) and reaches chance only at share_b = 0.85 / 0.9 = 0.944.
Colour id -1 means no patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightlab.vision.data import as_rgb

# Ten saturated, mutually distinct colours (RGB, 0-255), one per class.
PATCH_COLOURS = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 0, 128],
    ],
    dtype=np.uint8,
)
NO_PATCH = -1


def patch_colours(labels: np.ndarray, p_align: float, rng: np.random.Generator, num_classes: int = 10) -> np.ndarray:
    """Colour id per example: its label with probability p_align, another class uniformly otherwise."""
    aligned = rng.random(len(labels)) < p_align
    other = (labels + rng.integers(1, num_classes, size=len(labels))) % num_classes
    return np.where(aligned, labels, other).astype(np.int64)


def counterfactual_colours(colours: np.ndarray, rng: np.random.Generator, num_classes: int = 10) -> np.ndarray:
    """A different colour for every patched example (the patch colour swapped); -1 stays -1."""
    swapped = (colours + rng.integers(1, num_classes, size=len(colours))) % num_classes
    return np.where(colours == NO_PATCH, NO_PATCH, swapped).astype(np.int64)


def mixed_colours(colours_a: np.ndarray, colours_b: np.ndarray, rng: np.random.Generator, share_b: float = 0.5) -> np.ndarray:
    """Each example takes its env-B colour with probability `share_b`, else its env-A colour."""
    if not 0.0 <= share_b <= 1.0:
        raise ValueError(f"rebasin.robust_mix must lie in [0, 1], got {share_b}.")
    from_a = rng.random(len(colours_a)) < 1.0 - share_b
    return np.where(from_a, colours_a, colours_b)


def apply_patches(images: np.ndarray, colours: np.ndarray, size: int, offset: int = 0) -> np.ndarray:
    """RGB copies of `images` with a size x size square of each example's colour at (offset, offset)."""
    patched = as_rgb(images).copy()
    has_patch = (colours != NO_PATCH)[:, None, None, None]
    square = PATCH_COLOURS[np.where(colours == NO_PATCH, 0, colours)][:, :, None, None]
    window = (slice(None), slice(None), slice(offset, offset + size), slice(offset, offset + size))
    patched[window] = np.where(has_patch, square, patched[window])
    return patched


def build_environments(
    train_labels: np.ndarray, test_labels: np.ndarray, p_align_a: float, p_align_b: float, seed: int,
    num_classes: int = 10, share_b: float = 0.5,
) -> dict[str, np.ndarray]:
    """Colour ids for every environment and split: train_{A,B,AB}, test_{A,B,none,cf}; `share_b`
    is the share of env-B colours in the robust models' A+B mixture."""
    rng = np.random.default_rng(seed)
    train_a = patch_colours(train_labels, p_align_a, rng, num_classes)
    train_b = patch_colours(train_labels, p_align_b, rng, num_classes)
    test_a = patch_colours(test_labels, p_align_a, rng, num_classes)
    return {
        "train_A": train_a,
        "train_B": train_b,
        "train_AB": mixed_colours(train_a, train_b, rng, share_b),
        "test_A": test_a,
        "test_B": patch_colours(test_labels, p_align_b, rng, num_classes),
        "test_none": np.full(len(test_labels), NO_PATCH, dtype=np.int64),
        "test_cf": counterfactual_colours(test_a, rng, num_classes),
    }


def alignment_rate(colours: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of patched examples whose colour is their label's colour."""
    patched = colours != NO_PATCH
    return float((colours[patched] == labels[patched]).mean()) if patched.any() else float("nan")


@dataclass(frozen=True)
class Reliance:
    id_accuracy: float
    ood_accuracy: float
    cf_accuracy: float
    flip_rate: float

    @property
    def ood_drop(self) -> float:
        return self.id_accuracy - self.ood_accuracy

    @property
    def cf_accuracy_drop(self) -> float:
        return self.id_accuracy - self.cf_accuracy

    @property
    def srs(self) -> float:
        return spurious_reliance_score(self.ood_drop, self.cf_accuracy_drop, self.flip_rate)

    def as_dict(self) -> dict[str, float]:
        return {
            "id_accuracy": self.id_accuracy, "ood_accuracy": self.ood_accuracy,
            "cf_accuracy": self.cf_accuracy, "flip_rate": self.flip_rate,
            "ood_drop": self.ood_drop, "cf_accuracy_drop": self.cf_accuracy_drop, "srs": self.srs,
        }


SRS_DEFINITION = (
    "SRS = 0.4*(ID - OOD accuracy) + 0.3*(ID - counterfactual accuracy) + 0.3*flip rate; ID = env A test, "
    "OOD = no patch, counterfactual = env A test with the patch colour swapped"
)


def spurious_reliance_score(ood_drop: float, cf_accuracy_drop: float, flip_rate: float) -> float:
    """SRS = 0.4 OOD_drop + 0.3 CF_accuracy_drop + 0.3 flip_rate (the original study's weights)."""
    return 0.4 * ood_drop + 0.3 * cf_accuracy_drop + 0.3 * flip_rate


def reliance_from_predictions(
    labels: np.ndarray, pred_id: np.ndarray, pred_ood: np.ndarray, pred_cf: np.ndarray
) -> Reliance:
    """ID = env-A test, OOD = the same images without patch, CF = env-A test with the colour swapped."""
    return Reliance(
        id_accuracy=float((pred_id == labels).mean()),
        ood_accuracy=float((pred_ood == labels).mean()),
        cf_accuracy=float((pred_cf == labels).mean()),
        flip_rate=float((pred_id != pred_cf).mean()),
    )
