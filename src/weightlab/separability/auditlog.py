"""The audit log every separability rule writes: results/separability/audit_log_exp_<name>_seed_<seed>.json.

    {"metadata": {experiment, condition, seed, start_time, git_commit},   # experiment: 'exp_a_control', as the original
     "metrics": [{"step": 0, "timestamp": "...", "psi_accuracy": ..., ...}, ...],   # one dict per logged step
     "checkpoints": {"<step>": "sha256:<hex of the state>"},
     "summary": {"total_steps", "logged_steps", "duration_seconds", ...experiment's own results},
     "provenance": {...}}

`AuditLog` collects it during a run; `AUDIT_LOG_SCHEMA` is its JSON schema and `validate_audit_log`
checks a document against it before it is written (a malformed log never reaches disk).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from weightlab.errors import InputError
from weightlab.provenance import git_commit, provenance

_NUMBER_OR_NULL = {"type": ["number", "null"]}

AUDIT_LOG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["metadata", "metrics", "checkpoints", "summary", "provenance"],
    "additionalProperties": False,
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["experiment", "condition", "seed", "start_time", "git_commit"],
            "properties": {
                "experiment": {"type": "string", "pattern": "^(exp_)?[a-d]_[a-z_]+$"},
                "condition": {"type": "string"},
                "seed": {"type": "integer"},
                "start_time": {"type": "string", "format": "date-time"},
                "git_commit": {"type": "string"},
            },
        },
        "metrics": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["step"],
                "properties": {"step": {"type": "integer", "minimum": 0}, "timestamp": {"type": "string", "format": "date-time"}},
                "additionalProperties": _NUMBER_OR_NULL,
            },
        },
        "checkpoints": {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        },
        "summary": {
            "type": "object",
            "required": ["total_steps", "logged_steps", "duration_seconds"],
            "properties": {
                "total_steps": {"type": "integer", "minimum": 0},
                "logged_steps": {"type": "integer", "minimum": 0},
                "duration_seconds": {"type": "number", "minimum": 0},
            },
        },
        "provenance": {"type": "object", "required": ["config", "seed", "git_commit", "versions"]},
    },
}


def state_sha256(state: Mapping[str, Any]) -> str:
    """sha256 of a state dict: every tensor's name, dtype, shape and bytes, in key order
    (independent of how a file archive names its folder, so equal states hash equal)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        import torch

        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        raw = tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor  # numpy has no bfloat16
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def run_name(experiment: str) -> str:
    """'a_control' from a log's metadata.experiment ('exp_a_control', or the older 'a_control')."""
    return experiment.removeprefix("exp_")


def without_timestamps(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics rows without their wall-clock timestamps (to compare two runs' values)."""
    return [{k: v for k, v in row.items() if k != "timestamp"} for row in metrics]


def _clean(value: Any) -> Any:
    """A JSON-safe metric value: floats, ints, None (NaN and inf become None)."""
    if value is None:
        return None
    value = float(value) if not isinstance(value, int) or isinstance(value, bool) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def package_commit(distribution: str = "weightlab") -> str:
    """The commit an installed package was built from, for a folder that is not a git checkout:
    the ``vcs_info.commit_id`` pip records in ``direct_url.json`` (PEP 610) for an install from a
    repository; else ``<name>==<version>`` from the package metadata; 'unknown' when not installed."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    commit = direct.get("vcs_info", {}).get("commit_id") if isinstance(direct, dict) else None
    return str(commit) if commit else f"{distribution}=={dist.version}"


def audit_git_commit(cwd: str | Path | None = None) -> str:
    """The checkout's commit (`weightlab.provenance.git_commit`, run where the library lives), or
    the installed package's (`package_commit`) when that folder is not a git checkout."""
    commit = git_commit(Path(__file__).parent if cwd is None else cwd)
    return commit if commit != "unknown" else package_commit()


class AuditLog:
    """Collects one run's audit log: `record` metrics, `checkpoint` states, then `document`."""

    def __init__(self, experiment: str, condition: str, seed: int, config: Mapping[str, Any], packages: tuple[str, ...] = ()):
        self.metadata = {
            "experiment": f"exp_{experiment}_{condition}",
            "condition": condition,
            "seed": int(seed),
            "start_time": _now(),
            "git_commit": audit_git_commit(),
        }
        self.config = dict(config)
        self.packages = packages
        self.metrics: list[dict[str, Any]] = []
        self.checkpoints: dict[str, str] = {}
        self._start = time.perf_counter()

    def record(self, step: int, **metrics: Any) -> dict[str, Any]:
        """Append one logged step; returns the stored record."""
        entry = {"step": int(step), "timestamp": _now(), **{k: _clean(v) for k, v in metrics.items()}}
        self.metrics.append(entry)
        return entry

    def checkpoint(self, step: int, state: Mapping[str, Any]) -> str:
        digest = f"sha256:{state_sha256(state)}"
        self.checkpoints[str(int(step))] = digest
        return digest

    def series(self, name: str) -> tuple[list[int], list[float | None]]:
        """(steps, values) of one metric over the logged steps that have it."""
        rows = [m for m in self.metrics if name in m]
        return [m["step"] for m in rows], [m[name] for m in rows]

    def document(self, total_steps: int, **summary: Any) -> dict[str, Any]:
        """The complete log, validated against AUDIT_LOG_SCHEMA."""
        doc = {
            "metadata": self.metadata,
            "metrics": self.metrics,
            "checkpoints": self.checkpoints,
            "summary": {
                "total_steps": int(total_steps),
                "logged_steps": len(self.metrics),
                "duration_seconds": round(time.perf_counter() - self._start, 3),
                **summary,
            },
            "provenance": provenance(self.config, self.metadata["seed"], self.packages),
        }
        validate_audit_log(doc)
        return doc


def validate_audit_log(doc: Mapping[str, Any], where: str = "audit log") -> None:
    """Raise InputError naming the first schema violation of an audit log document."""
    validator = jsonschema.Draft202012Validator(AUDIT_LOG_SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise InputError(f"{where} does not match the audit-log schema at {at}: {first.message}")
