"""The design of the separability study: experiments, their conditions, and file names.

Torch-free: the workflow reads it while parsing.
"""

from __future__ import annotations

from typing import Any, Mapping

# experiment letter -> (name, conditions); one rule per experiment and condition.
EXPERIMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "a": ("constraint", ("control", "constraint", "naive_clamp", "mean_preserving_clamp")),
    "b": ("ioi", ("baseline", "critical", "random")),
    "c": ("grokking", ("high_wd", "no_wd")),
    "d": ("superposition", ("superposition",)),
}
CONDITIONS = {letter: conditions for letter, (_, conditions) in EXPERIMENTS.items()}
CLAMPS = ("naive_clamp", "mean_preserving_clamp")  # exp A conditions calibrated on the control
ROOT = "results/separability"


def log_name(experiment: str, condition: str) -> str:
    """'a_control', 'c_high_wd', 'd_superposition': the <name> of audit_log_exp_<name>_seed_<seed>."""
    if condition not in CONDITIONS.get(experiment, ()):
        raise KeyError(f"experiment {experiment!r} has no condition {condition!r}")
    return f"{experiment}_{condition}"


def audit_log_path(experiment: str, condition: str, seed: int | str, root: str = ROOT) -> str:
    return f"{root}/audit_log_exp_{log_name(experiment, condition)}_seed_{seed}.json"


def experiment_seeds(letter: str, settings: Mapping[str, Any]) -> list[int]:
    """The seeds experiment `letter` runs: its own ``seeds`` list, or the study's ``seeds``."""
    return list(settings[f"exp_{letter}"].get("seeds") or settings["seeds"])


def experiment_settings(letter: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The config block of one experiment (``separability.exp_<letter>``) without its seed list:
    a rule's params, so a change to one experiment's settings re-runs only that experiment's
    rules, and adding a seed re-runs nothing that exists."""
    return {k: v for k, v in settings[f"exp_{letter}"].items() if k != "seeds"}


def study_audit_logs(settings: Mapping[str, Any], root: str = ROOT) -> list[str]:
    """Every audit log the study's config asks for (each experiment with its seeds)."""
    return [
        audit_log_path(letter, condition, seed, root)
        for letter, conditions in CONDITIONS.items()
        for condition in conditions
        for seed in experiment_seeds(letter, settings)
    ]
