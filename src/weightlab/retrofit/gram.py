"""The Gram regulariser, the transport step and the conditioning numbers of the FFN weights.

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
  FFN's input activations on the validation tokens (`ActivationCovariance`), averaged over layers.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Mapping

import torch

from weightlab.errors import InputError


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
