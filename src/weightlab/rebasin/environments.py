"""Which images each model of the Re-Basin study trains on and is evaluated on."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from weightlab.rebasin.design import group_of
from weightlab.rebasin.spurious import apply_patches
from weightlab.vision.data import ImageDataset, stratified_subset

EvalSets = Mapping[str, tuple[np.ndarray, np.ndarray]]
TRAINING_ENV = {"A": "train_A", "R": "train_AB"}
EVAL_ENVS = {"A": "test_A", "B": "test_B", "none": "test_none", "cf": "test_cf"}


def environment_split(
    dataset: ImageDataset, colours: Mapping[str, np.ndarray], env_key: str, patch_size: int,
    indices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Patched images and labels of one environment split ('train_A', 'test_cf', ...)."""
    split = dataset.train if env_key.startswith("train") else dataset.test
    env_colours = colours[env_key]
    if indices is not None:
        split, env_colours = split.subset(indices), env_colours[indices]
    return apply_patches(split.images, env_colours, patch_size), split.labels


def training_set(dataset: ImageDataset, colours: Mapping[str, np.ndarray], model: str, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    return environment_split(dataset, colours, TRAINING_ENV[group_of(model)], patch_size)


def evaluation_sets(
    dataset: ImageDataset, colours: Mapping[str, np.ndarray], patch_size: int, size: int | None = None, seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Env A, env B, no-patch and counterfactual versions of the same test images."""
    indices = stratified_subset(dataset.test.labels, size, seed)
    return {name: environment_split(dataset, colours, key, patch_size, indices) for name, key in EVAL_ENVS.items()}


def reset_images(
    dataset: ImageDataset, colours: Mapping[str, np.ndarray], models: Sequence[str], patch_size: int, size: int, seed: int,
) -> np.ndarray:
    """Training images for BatchNorm resets, drawn equally from the endpoints' training environments."""
    envs = sorted({TRAINING_ENV[group_of(m)] for m in models})
    rng = np.random.default_rng(seed)
    parts = []
    for env in envs:
        indices = np.sort(rng.choice(len(dataset.train), size=min(len(dataset.train), size // len(envs)), replace=False))
        parts.append(environment_split(dataset, colours, env, patch_size, indices)[0])
    return np.concatenate(parts)

