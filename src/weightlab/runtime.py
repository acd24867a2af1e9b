"""Seeds, devices and threads: what makes a run reproducible and where it runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from weightlab.errors import WeightlabError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WeightlabError(f"device '{name}' was requested but no CUDA GPU is visible; set device: auto or cpu.")
    return torch.device(name)


def configure(threads: int, deterministic: bool = True) -> None:
    """Give torch the rule's threads and make CPU kernels deterministic."""
    # Snakemake passes the rule's threads scaled to --cores, not to the machine: cap at its CPUs.
    threads = max(1, min(int(threads), os.cpu_count() or 1))
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
