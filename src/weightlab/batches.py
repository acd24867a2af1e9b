"""Index batches for every training and evaluation loop (images, LoRA, LM retrofit)."""

from __future__ import annotations

from typing import Iterator

import torch


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator | None = None, num_steps: int | None = None,
) -> Iterator[torch.Tensor]:
    """Shuffled index batches when a generator is given, in order otherwise; the last may be short.

    With `num_steps` (step-counted training, such as the LM retrofit): exactly `num_steps` full
    batches, cut from epochs of seeded permutations concatenated (a batch may span two epochs)."""
    if num_steps is None:
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        yield from torch.split(order, batch_size)
        return
    if generator is None:
        raise ValueError("batch_indices with num_steps draws seeded permutations: pass a generator.")
    needed = batch_size * num_steps
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(-(-needed // n))])
    yield from order[:needed].view(num_steps, batch_size)
