"""Experiment A's task: two interleaved repeating patterns (the original's InterleavedSequenceDataset).

Per sequence and stream, a period p uniform in 2..7 and p tokens uniform over the vocabulary,
repeated; the two streams interleaved ``A1 B1 A2 B2 ...``; next-token prediction with the loss over
every position; Ψ = accuracy at the **last** position (the original's ``compute_psi_accuracy`` reads
``logits[:, -1]``), whose target is always predictable by copying the token one period back in its
stream (`oracle_predictions` scores 1.0 there).

What a model must do to solve it: the period differs per sequence and stream, so no fixed offset
finds the right token. A model that reads, at the query, the previous token of the target's stream
and finds its earlier occurrence (a "previous token" head in layer 0, an induction head in layer 1)
can; a one-layer attention model sees only each key's own token and position, and copying from one
fixed offset is the natural strategy open to it. `fixed_offset_ceiling` measures the best such
copy on a data set (about 0.67 at sequence length 32, 0.84 at 128): the task's ceiling for that
strategy, reported instead of the oracle's 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from weightlab.separability.observables import psi_accuracy

PATTERN_LENGTHS = (2, 7)  # each stream's period, uniform over 2..7 (np.random.randint(2, 8) in the original)


@dataclass(frozen=True)
class InterleavedData:
    """Sequences [n, seq_len + 1] of two interleaved repeating patterns and their periods [n, 2]
    (stream A at even positions, stream B at odd ones). Inputs are ``tokens[:, :-1]``, targets
    ``tokens[:, 1:]``."""

    tokens: torch.Tensor
    periods: torch.Tensor

    @property
    def inputs(self) -> torch.Tensor:
        return self.tokens[:, :-1]

    @property
    def targets(self) -> torch.Tensor:
        return self.tokens[:, 1:]

    def __len__(self) -> int:
        return self.tokens.shape[0]


def interleaved_sequences(n: int, seq_len: int, vocab_size: int, generator: torch.Generator) -> InterleavedData:
    """The original's InterleavedSequenceDataset: per sequence and stream, a period p uniform in 2..7
    and p tokens uniform over the vocabulary, repeated; the two streams interleaved A1 B1 A2 B2 ..."""
    tokens = torch.empty(n, seq_len + 1, dtype=torch.long)
    periods = torch.empty(n, 2, dtype=torch.long)
    low, high = PATTERN_LENGTHS
    for stream in (0, 1):
        length = len(range(stream, seq_len + 1, 2))
        period = torch.randint(low, high + 1, (n,), generator=generator)
        pattern = torch.randint(0, vocab_size, (n, high), generator=generator)
        tokens[:, stream::2] = pattern.gather(1, torch.arange(length)[None, :] % period[:, None])
        periods[:, stream] = period
    return InterleavedData(tokens, periods)


def predictable_targets(periods: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Bool [n, seq_len]: target t (token t + 1) is its stream's pattern repeated, so copying the
    token one period back in the same stream predicts it (the first period of each stream cannot)."""
    position = torch.arange(1, seq_len + 1, device=periods.device)
    stream, index = position % 2, position // 2
    return index[None, :] >= periods.gather(1, stream.expand(periods.shape[0], -1))


def oracle_predictions(data: InterleavedData) -> torch.Tensor:
    """The perfect predictor [n, seq_len]: the token one period back in the target's stream where the
    target is predictable, -1 elsewhere (never right)."""
    n, seq_len = data.inputs.shape
    position = torch.arange(1, seq_len + 1, device=data.tokens.device).expand(n, -1)
    back = position - 2 * data.periods.gather(1, (position % 2))
    copied = data.tokens.gather(1, back.clamp_min(0))
    return torch.where(predictable_targets(data.periods, seq_len), copied, torch.full_like(copied, -1))


def oracle_accuracy(data: InterleavedData) -> float:
    """The perfect predictor's Ψ on a data set (1.0 when the task is what it claims)."""
    return float((oracle_predictions(data)[:, -1] == data.targets[:, -1]).float().mean())


def fixed_offset_accuracies(data: InterleavedData) -> dict[int, float]:
    """Ψ of copying the input token `d` positions before the last target, for every offset d the
    inputs allow (1 … seq_len): {d: accuracy}. Chance agreements count, as they would for a model."""
    seq_len = data.inputs.shape[1]
    target = data.targets[:, -1]
    return {d: float((data.tokens[:, seq_len - d] == target).float().mean()) for d in range(1, seq_len + 1)}


def fixed_offset_ceiling(data: InterleavedData) -> dict[str, float | int]:
    """The best fixed-offset copy: its offset and Ψ (the task's ceiling for a model that copies from
    one position relative to the query, which is what a one-layer attention model can do here)."""
    accuracies = fixed_offset_accuracies(data)
    offset = max(accuracies, key=lambda d: (accuracies[d], -d))
    return {"offset": offset, "accuracy": accuracies[offset]}


def last_position_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Ψ: accuracy of the final position's prediction (logits [batch, pos, vocab], targets [batch, pos])."""
    return psi_accuracy(logits[:, -1], targets[:, -1])
