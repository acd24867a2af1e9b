"""The provenance block every JSON result carries."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

DEFAULT_PACKAGES = ("weightlab", "torch", "numpy", "scipy", "pandas", "matplotlib", "snakemake")


def git_commit(cwd: str | Path | None = None) -> str:
    """The checked-out commit, with '-dirty' when tracked files differ; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(
    config: dict[str, Any], seed: int | None, extra_packages: Iterable[str] = ()
) -> dict[str, Any]:
    """Config values used, seed, git commit, package versions and creation time."""
    return {
        "config": config,
        "seed": seed,
        "git_commit": git_commit(Path(__file__).parent),
        "versions": package_versions(tuple(DEFAULT_PACKAGES) + tuple(extra_packages)),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
