"""The design of the safety-neuron drift study: groups, measures, hypotheses and file names.

Torch-free: the workflow reads it while parsing.
"""

from __future__ import annotations

from typing import Any, Mapping

ROOT = "results/drift"
GROUPS = ("snip_top", "set_diff", "utility", "random", "random_matched")
SAFETY_GROUPS = ("snip_top", "set_diff")
CONTROLS = ("random_matched", "random")  # what each safety group is compared with, primary first
SNIP_SETS = ("safety", "utility")  # SNIP is scored on each; its data set is snip_<set>
METRICS = ("cosine", "l2", "relative")  # per-neuron drift of the effective weights vs the initial ones
# what each unit is measured on (a single weight has no direction: no cosine) and what its verdict reads
UNIT_METRICS = {"row": METRICS, "weight": ("l2", "relative")}
UNIT_VERDICT_MEASURES = {"row": ("cosine", "l2"), "weight": ("l2",)}
# +1: a larger value is more drift; -1: a smaller one is (cosine similarity falls as a row turns).
DRIFT_SIGN = {"cosine": -1, "cosine_distance": 1, "l2": 1, "relative": 1}
REFUSAL_SETS = ("harmful", "benign")  # held-out harmful prompts (safety) and benign ones (over-refusal)
HYPOTHESES = {
    "H1": "safety neurons drift more than matched neurons (fragile safety neurons)",
    "no_differential_drift": "safety neurons drift as much as matched neurons (the original's H2, safety lost through new pathways, "
          "which equal drift is consistent with but cannot show)",
}

DATA = f"{ROOT}/data.json"  # every prompt set, with its sources
ALIGNED_MODEL = f"{ROOT}/aligned_model"  # merged safety-aligned model (a backbone folder)
ALIGNMENT = f"{ROOT}/alignment.json"  # refusal before/after alignment, training loss
DRIFT_LOG = f"{ROOT}/drift_log.jsonl"  # one line per logged step: drift per group, refusal, loss
FINAL_DRIFT = f"{ROOT}/final_drift.npz"  # per-neuron drift at the last step, for the statistics
FINETUNE = f"{ROOT}/finetune.json"  # refusal before/after fine-tuning, modules trained, timings
GROUP_SUMMARY = f"{ROOT}/neuron_groups_summary.json"  # counts, overlaps, spread over layers/types
STATISTICS = f"{ROOT}/statistical_results.json"
CRITERIA = f"{ROOT}/criteria.json"  # preconditions and expectations (weightlab.verdicts), the study verdict
REPORT = f"{ROOT}/drift_analysis_report.txt"
TABLES = f"{ROOT}/tables.html"  # the key tables, for the HTML report
FIGURES = f"{ROOT}/figures"
FIGURE_NAMES = ("drift_timeseries", "final_drift_distributions", "refusal")


def group_path(group: str, root: str = ROOT) -> str:
    if group not in GROUPS:
        raise KeyError(f"unknown neuron group {group!r}; choose from {GROUPS}")
    return f"{root}/neuron_groups_{group}.json"


def snip_scores_path(snip_set: str, root: str = ROOT) -> str:
    """Neuron scores of one SNIP set (temporary: only the group rule reads them)."""
    if snip_set not in SNIP_SETS:
        raise KeyError(f"unknown SNIP set {snip_set!r}; choose from {SNIP_SETS}")
    return f"{root}/snip_neuron_scores_{snip_set}.npz"


def figure_path(name: str, root: str = ROOT) -> str:
    if name not in FIGURE_NAMES:
        raise KeyError(f"unknown drift figure {name!r}; choose from {FIGURE_NAMES}")
    return f"{root}/figures/{name}.png"


def all_outputs(root: str = ROOT) -> list[str]:
    """Everything the study leaves behind (its target rule's inputs)."""
    return [
        *(group_path(g, root) for g in GROUPS), f"{root}/neuron_groups_summary.json", f"{root}/drift_log.jsonl",
        f"{root}/statistical_results.json", f"{root}/criteria.json", f"{root}/drift_analysis_report.txt", f"{root}/tables.html",
        *(figure_path(f, root) for f in FIGURE_NAMES),
    ]


LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules")
FINETUNE_KEYS = ("learning_rate", "batch_size", "num_epochs", "max_steps", "weight_decay", "max_grad_norm", "optimizer", "precision",
                 "drift_log_interval", "refusal_interval")
STAGE_KEYS = {
    "data": ("data",),
    "align": ("alignment", *LORA_KEYS, "refusal", "max_length", "dtype", "precision"),
    "snip": ("max_length", "snip_layers_per_pass", "dtype", "refusal", "precision", "unit"),
    "groups": ("snip_top_k", "set_diff_p", "set_diff_q", "utility_top_k", "random_k", "unit"),
    "finetune": (*LORA_KEYS, *FINETUNE_KEYS, "refusal", "max_length", "dtype", "unit", "weight_sample"),
    "analysis": ("analysis", "unit"),
}


def stage_settings(stage: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of the ``drift:`` config section that one stage reads, so a change to one stage's
    settings re-runs only that stage and what follows it."""
    if stage not in STAGE_KEYS:
        raise KeyError(f"unknown drift stage {stage!r}; choose from {sorted(STAGE_KEYS)}")
    return {k: settings[k] for k in STAGE_KEYS[stage] if k in settings}


UNITS = ("row", "weight")  # what a neuron is: an output row of a projection, or one weight (Wei et al.'s unit)

