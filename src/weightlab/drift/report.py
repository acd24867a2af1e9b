"""The drift study's files between stages and its text report.

`save_final_drift` / `load_final_drift`: the per-neuron drift of every tracked group at the last
step (``final_drift.npz``), which the statistics need; `read_drift_log` / `time_series`: the
per-step summaries of ``drift_log.jsonl``; `group_summary`: counts, overlaps and spread of the
groups; `report_text`: ``drift_analysis_report.txt``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.drift.design import GROUPS, HYPOTHESES, METRICS, SAFETY_GROUPS
from weightlab.drift.groups import Group, count, overlap, spread
from weightlab.errors import InputError
from weightlab.io import atomic_path, read_npz, write_npz
from weightlab.tables import format_value

SEPARATOR = "|"


POPULATION = "population"  # the key prefix of every trained neuron's drift in final_drift.npz


def save_final_drift(path: str | Path, final: Mapping[str, Mapping[str, np.ndarray]], modules: Mapping[str, Sequence[str]],
                     population: Mapping[str, Any] | None = None) -> None:
    """Per-neuron drift of every group (``<group>|<measure>``), each neuron's module
    (``<group>|module``) and, given, the drift of every trained neuron (``population|<key>``:
    the measures, ``module_index``, ``row`` and the module names ``modules``)."""
    arrays = {f"{g}{SEPARATOR}{m}": np.asarray(v, dtype=np.float64) for g, measures in final.items() for m, v in measures.items()}
    arrays.update({f"{g}{SEPARATOR}module": np.asarray(list(names), dtype=str) for g, names in modules.items()})
    for key, values in (population or {}).items():
        arrays[f"{POPULATION}{SEPARATOR}{key}"] = np.asarray(values, dtype=str) if key == "modules" else np.asarray(values)
    write_npz(path, **arrays)


def load_population(path: str | Path) -> dict[str, Any]:
    """The ``population|`` arrays of `save_final_drift` (empty when the file has none)."""
    prefix = f"{POPULATION}{SEPARATOR}"
    out: dict[str, Any] = {}
    for key, values in read_npz(path).items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            out[name] = values.tolist() if name == "modules" else values
    return out


def load_final_drift(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[str]]]:
    """(group -> measure -> values, group -> module of each neuron) from `save_final_drift`."""
    final: dict[str, dict[str, np.ndarray]] = {}
    modules: dict[str, list[str]] = {}
    for key, values in read_npz(path).items():
        if key.startswith(f"{POPULATION}{SEPARATOR}"):
            continue
        group, _, measure = key.partition(SEPARATOR)
        if measure == "module":
            modules[group] = values.tolist()
        else:
            final.setdefault(group, {})[measure] = values
    return final, modules


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line (for a log written as it grows; the rule's output is made atomic by
    writing it under a temporary name and renaming at the end)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, allow_nan=True) + "\n")


def write_jsonl(path: str | Path, records: Sequence[Mapping[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))


def read_drift_log(path: str | Path) -> list[dict[str, Any]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise InputError(f"{path} does not exist; run the fine-tuning rule first.") from err
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:  # a fine-tuning stopped mid-append leaves a cut last line
            raise InputError(f"{path} line {number} is not a JSON record ({err.msg}); re-run the fine-tuning rule.") from err
        if not isinstance(record, dict):
            raise InputError(f"{path} line {number} is not a JSON object; re-run the fine-tuning rule.")
        records.append(record)
    if not records:
        raise InputError(f"{path} holds no record; re-run the fine-tuning rule.")
    return records


def time_series(records: Sequence[Mapping[str, Any]], measure: str, stat: str = "median") -> dict[str, tuple[list[int], list[float | None]]]:
    """Per group, (steps, the `stat` of `measure` at each step) from the drift log."""
    groups = list(records[0]["groups"])
    return {g: ([r["step"] for r in records], [r["groups"][g][measure][stat] for r in records]) for g in groups}


def refusal_series(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Per prompt set, (steps, refusal rate) at the steps where refusal was measured."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        for name, result in r.get("refusal", {}).items():
            steps, rates = out.setdefault(name, ([], []))
            steps.append(r["step"])
            rates.append(result["rate"])
    return out


def group_summary(groups: Mapping[str, Group], sizes: Mapping[str, int]) -> dict[str, Any]:
    """Counts, pairwise overlaps and the spread over layers and module types of every group."""
    names = [g for g in GROUPS if g in groups]
    return {
        "total_neurons": int(sum(sizes.values())), "modules": len(sizes),
        "counts": {g: count(groups[g]) for g in names},
        "overlaps": {f"{a}&{b}": overlap(groups[a], groups[b]) for i, a in enumerate(names) for b in names[i + 1:]},
        "spread": {g: spread(groups[g], sizes) for g in names},
    }


def _top(spread_part: Mapping[str, Mapping[str, Any]], k: int = 5) -> str:
    ranked = sorted(spread_part.items(), key=lambda kv: -kv[1]["fraction"])[:k]
    return ", ".join(f"{name} {100 * v['fraction']:.1f}%" for name, v in ranked)


def report_text(statistics: Mapping[str, Any], records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                finetune: Mapping[str, Any] | None = None, alignment: Mapping[str, Any] | None = None) -> str:
    """drift_analysis_report.txt: refusal before/after, the groups, the final drift per group, the
    effect sizes and the verdict with its thresholds."""
    lines = ["Safety-critical neuron drift under LoRA fine-tuning", "=" * 52, ""]
    if alignment:
        lines += ["Safety alignment (LoRA, merged):"]
        for stage in ("before", "after"):
            rates = alignment.get(stage) or {}
            if not rates:
                lines.append(f"  refusal {stage:6s}: not measured (drift.refusal.before_alignment: false)")
                continue
            lines.append(f"  refusal {stage:6s}: " + ", ".join(f"{k} {format_value(v.get('rate'), '.3g')} ({v.get('refused')}/{v.get('n')})" for k, v in rates.items()))
        lines.append("")
    refusal = [r for r in records if "refusal" in r]
    if refusal:
        lines += ["Refusal along the fine-tuning (held-out prompts, greedy decoding, refusal-phrase matching):"]
        for r in refusal:
            lines.append(f"  step {r['step']:>5}: " + ", ".join(f"{k} {format_value(v['rate'], '.3g')}" for k, v in r["refusal"].items()))
        lines.append("")
    single_weights = "cosine_distance" not in next(iter(records[-1]["groups"].values()), {"cosine_distance": None})
    lines += ["Neuron groups (unit weight: a neuron is one single weight):" if single_weights
              else "Neuron groups (a neuron is one output row of one projection):"]
    for g, n in summary["counts"].items():
        lines.append(f"  {g:15s} {n:>7} neurons")
    lines.append(f"  of {summary['total_neurons']} neurons in {summary['modules']} modules")
    for g in SAFETY_GROUPS:
        if g in summary["spread"]:
            lines.append(f"  {g} by module type: {_top(summary['spread'][g]['by_module_type'], 7)}")
            lines.append(f"  {g} densest layers: {_top(summary['spread'][g]['by_layer'])}")
    if summary["overlaps"]:
        lines.append("  overlaps: " + ", ".join(f"{k} {v}" for k, v in summary["overlaps"].items()))
    if finetune:
        lines += ["", f"Groups are compared only over the modules LoRA trains ({len(finetune.get('trained_modules', []))} modules: "
                  f"{', '.join(sorted({m.rsplit('.', 1)[-1] for m in finetune.get('trained_modules', [])}))}); neurons elsewhere cannot move.",
                  "  neurons left out per group: " + ", ".join(f"{g} {n}" for g, n in finetune.get("excluded", {}).items())]
    last = records[-1]
    shown = {"cosine": ("cosine_distance", "1-cos"), "l2": ("l2", "L2"), "relative": ("relative", "relative")}
    logged = next(iter(last["groups"].values()), {})
    metrics = [m for m in METRICS if shown[m][0] in logged]  # a single weight (unit weight) has no cosine
    lines += ["", f"Drift at the last step ({last['step']}), effective weights W + (alpha/r)BA vs initial, float64 arithmetic",
              "(median [25%, 75%] over the group's neurons):", f"  {'group':26s} " + " ".join(f"{shown[m][1]:>28s}" for m in metrics)]
    for g, measures in last["groups"].items():
        cells = []
        for m in metrics:
            s = measures[shown[m][0]]
            cells.append(f"{format_value(s['median'], '.3g')} [{format_value(s['q25'], '.3g')}, {format_value(s['q75'], '.3g')}]")
        lines.append(f"  {g:26s} " + " ".join(f"{c:>28s}" for c in cells))
    lines += [""] + statistics_lines(statistics)
    return "\n".join(lines)


def _ci(ci: Sequence[float] | None) -> str:
    return format_value(None) if ci is None else f"[{format_value(ci[0], '.3g')}, {format_value(ci[1], '.3g')}]"


def _rate(result: Mapping[str, Any]) -> str:
    return f"{format_value(result.get('rate'), '.3g')} {_ci(result.get('interval'))} (n {result.get('n')})"


def statistics_lines(statistics: Mapping[str, Any]) -> list[str]:
    """The preconditions, the comparisons against the three controls, the power check and the
    verdict, as report lines."""
    th = statistics["thresholds"]
    lines = []
    if statistics.get("refusal"):
        lines.append("Refusal rates with 95% Wilson intervals (judge: refusal phrases in the opening characters of a greedy answer):")
    for stage, rates in statistics.get("refusal", {}).items():
        lines.append(f"  {stage.replace('_', ' '):22s} " + "; ".join(f"{k} {_rate(v)}" for k, v in rates.items()))
    heldout = statistics.get("heldout_loss")
    if heldout:
        lines.append(f"Held-out utility loss: {heldout['before']:.4g} -> {heldout['after']:.4g} ({100 * heldout['relative_change']:+.2f}%), "
                     f"mean per-example change {heldout['change']:.4g} {_ci(heldout['ci'])}")
    lines += [*([""] if lines else []), "Preconditions:"]
    for c in statistics["criteria"]:
        if c["kind"] == "precondition":
            lines.append(f"  {c['id']:24s} {c['verdict']:13s} {c['statement']}; value {c['value']}")
    lines += ["", f"Effect sizes at the last step: d in within-module SDs of the measure (regression: of log drift), "
              f"{100 * th['confidence']:g}% and {100 * th['equivalence_interval']:g}% intervals from {th['n_boot']} bootstrap resamples of modules;",
              "positive d means the safety group drifted more. Controls: module_norm = the 4 neurons of the module with the nearest",
              "row norms (primary); module = every other neuron of the module; regression = log drift ~ module + log norm + group."]
    for group, by_measure in statistics["comparisons"].items():
        for measure, by_control in by_measure.items():
            for control, c in by_control.items():
                extra = f" ratio {c['ratio']:.3g}" if "ratio" in c else ""
                lines.append(f"  {group:9s} {measure:9s} {control:12s} d {format_value(c['d'], '.3g'):>8s} CI {_ci(c['ci']):>18s} "
                             f"equivalence CI {_ci(c['equivalence_ci']):>18s}{extra}  -> {c['reading']}")
    power = statistics.get("power", {})
    if power:
        lines += ["", "Power check (a random group shaped like the safety group, its drift shifted by d, read against the primary control):"]
        for group, by_measure in power.items():
            for measure, p in by_measure.items():
                curve = ", ".join(f"d {row['shift_d']:g}: {row['power_h1']:.2f}" for row in p["curve"])
                lines.append(f"  {group:9s} {measure:7s} P(H1) {curve}; smallest detectable d {p['smallest_detectable_d']}; "
                             f"P(no differential drift | d = 0) {p['equivalence_power_at_zero']}")
    lines += ["", f"Verdict on {' and '.join(statistics['verdict_measures'])} change against the '{statistics['primary_control']}' control:",
              f"  H1 if d >= {th['h1_min_d']} with the {100 * th['confidence']:g}% CI above 0 ({HYPOTHESES['H1']});",
              f"  no differential drift if the {100 * th['equivalence_interval']:g}% CI lies inside +-{th['margin']} ({HYPOTHESES['no_differential_drift']}).",
              "  " + ", ".join(f"{g}: {v}" for g, v in statistics["reading_by_group"].items())]
    if statistics.get("failed_preconditions"):
        lines.append(f"  study verdict: not testable (failed preconditions: {', '.join(statistics['failed_preconditions'])}); "
                     f"the reading would be {statistics.get('reading_if_testable')}")
    else:
        lines.append(f"  study verdict: {statistics['verdict']}")
    lines.append("")
    return lines
