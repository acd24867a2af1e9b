"""The original study's success criteria, each evaluated on the audit logs with its threshold and
the measured value: pass, fail, or not evaluable (with the reason). An honest fail is a result.

Values are means over the seeds an experiment ran, with the Student-t 95% interval over seeds
where there are two or more; Cohen's d compares per-seed values and needs at least two seeds per
condition. Thresholds come from ``separability.criteria`` in the config.

Every criterion becomes one record of ``weightlab.verdicts``. A1 (the control reaches the
original's accuracy) is a precondition of every other criterion of experiment A: a model that
cannot do the task cannot show what freezing or clamping costs. Preconditions of ours, measured
from the logs: each clamp changes what it clamps (the naive clamp the residual's norm, the
mean-preserving clamp its variance; a clamp that leaves them unchanged is a no-op), the
experiment-D model is in superposition (Elhage's features per dimension above 1), and D's ablation
finds both groups it compares (a variance ratio needs a suppressor and a clean unit; `verdicts`
calls a value of an empty group not evaluable). C2 on one seed reports the run's own interval for
ρ (a block bootstrap over its logged steps); over seeds, the interval of the seeds' ρ decides.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from weightlab.separability.auditlog import run_name
from weightlab.separability.observables import aggregate_final
from weightlab.stats import cohens_d, mean_of
from weightlab.tables import format_value
from weightlab.verdicts import EXPECTATION, OURS, PRECONDITION, criteria_document, t_interval
from weightlab.verdicts import Criterion as Record
from weightlab.verdicts import criterion as record


@dataclass
class Criterion:
    id: str
    experiment: str
    statement: str  # the original's expectation, as it is tested here
    threshold: Any
    measured: Any
    passed: bool | None  # None: not evaluable (see `detail`)
    detail: str = ""
    interval: list[float] | None = None  # 95% interval over seeds of the mean (Student-t), where there are seeds


def by_run(logs: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Audit logs grouped by run name ('a_control', ...), each list ordered by seed."""
    runs: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for log in logs:
        runs[run_name(log["metadata"]["experiment"])].append(log)
    return {name: sorted(group, key=lambda log: log["metadata"]["seed"]) for name, group in runs.items()}


def final_metric(log: Mapping[str, Any], name: str) -> float | None:
    """The last logged value of a metric (None if it was never logged)."""
    values = [m[name] for m in log["metrics"] if m.get(name) is not None]
    return float(values[-1]) if values else None


def peak_metric(log: Mapping[str, Any], name: str) -> float | None:
    values = [m[name] for m in log["metrics"] if m.get(name) is not None]
    return float(max(values)) if values else None


def summary_value(log: Mapping[str, Any], name: str) -> Any:
    return log["summary"].get(name)


def _values(runs: Mapping[str, Sequence[Mapping[str, Any]]], run: str, read) -> list[float]:
    return [float(v) for v in (read(log) for log in runs.get(run, [])) if v is not None and math.isfinite(float(v))]


def _mean(values: Sequence[float]) -> float | None:
    return mean_of(values, empty=None)


def _missing(id_: str, experiment: str, statement: str, threshold: Any, what: str) -> Criterion:
    return Criterion(id_, experiment, statement, threshold, None, None, f"not evaluable: {what}")


def _compare(id_, experiment, statement, threshold, measured, test, detail="", seeds: Sequence[float] | None = None) -> Criterion:
    if measured is None:
        return _missing(id_, experiment, statement, threshold, detail or "no measured value")
    interval = t_interval(seeds)[1] if seeds else None
    return Criterion(id_, experiment, statement, threshold, measured, bool(test(measured)), detail, interval)


def experiment_a(runs, t: Mapping[str, Any]) -> list[Criterion]:
    acc = {c: _values(runs, f"a_{c}", lambda log: final_metric(log, "psi_accuracy"))
           for c in ("control", "constraint", "naive_clamp", "mean_preserving_clamp")}
    act = {c: _values(runs, f"a_{c}", _final_activation) for c in ("control", "constraint")}
    n = {c: len(v) for c, v in acc.items()}
    low, high = t["a_constraint_accuracy"]
    out = [
        _compare("A1", "a", "control reaches high accuracy (all heads train)", f">= {t['a_control_accuracy_min']}",
                 _mean(acc["control"]), lambda v: v >= t["a_control_accuracy_min"], f"mean final held-out accuracy over {n['control']} seed(s)",
                 acc["control"]),
        _compare("A2", "a", "constraint (3 of 4 heads frozen) lands in the original's accuracy band", f"in [{low}, {high}]",
                 _mean(acc["constraint"]), lambda v: low <= v <= high, f"mean over {n['constraint']} seed(s)", acc["constraint"]),
    ]
    ratio = None
    if act["control"] and act["constraint"]:
        ratio = _mean(act["constraint"]) / _mean(act["control"])
    out.append(_compare("A3", "a", "under constraint, amplitude (A_activation of the last layer's residual stream) is far higher than in the control",
                        f"constraint / control >= {t['a_activation_ratio_min']}", ratio,
                        lambda v: v >= t["a_activation_ratio_min"],
                        f"control {format_value(_mean(act['control']))}, constraint {format_value(_mean(act['constraint']))}"))
    acts = {c: [(summary_value(log, "clamp_effect") or {}).get("acts") for log in runs.get(f"a_{c}", [])]
            for c in ("naive_clamp", "mean_preserving_clamp")}
    out.append(_compare("A4", "a", "naive clamp (amplitude and variance fixed) collapses", f"< {t['a_naive_accuracy_max']}",
                        _mean(acc["naive_clamp"]), lambda v: v < t["a_naive_accuracy_max"],
                        f"mean over {n['naive_clamp']} seed(s); the clamp acts (precondition, per seed): naive {acts['naive_clamp']}, "
                        f"mean-preserving {acts['mean_preserving_clamp']}",
                        acc["naive_clamp"]))
    share = None
    if acc["mean_preserving_clamp"] and acc["constraint"] and _mean(acc["constraint"]) > 0:
        share = _mean(acc["mean_preserving_clamp"]) / _mean(acc["constraint"])
    out.append(_compare("A5", "a", "mean-preserving clamp (variance only) keeps the constraint's accuracy",
                        f"mean-preserving / constraint >= {t['a_mean_preserving_fraction_min']}", share,
                        lambda v: v >= t["a_mean_preserving_fraction_min"],
                        f"mean-preserving {format_value(_mean(acc['mean_preserving_clamp']))}, constraint {format_value(_mean(acc['constraint']))}"))
    d = cohens_d(acc["constraint"], acc["naive_clamp"])
    out.append(Criterion("A6", "a", "constraint vs naive clamp: a very large effect on accuracy (Cohen's d)",
                         f"> {t['a_cohens_d_min']}", None if math.isnan(d) else d,
                         None if math.isnan(d) else bool(d > t["a_cohens_d_min"]),
                         f"per-seed final accuracies, {n['constraint']} and {n['naive_clamp']} seed(s)"
                         + ("" if not math.isnan(d) else "; not evaluable: needs >= 2 seeds per condition with spread")))
    return out


def _final_activation(log: Mapping[str, Any]) -> float | None:
    """The last layer's final A_activation (``summary.final_A_activation``; older logs: layer 0's)."""
    value = summary_value(log, "final_A_activation")
    return float(value) if value is not None else final_metric(log, "A_activation_L0")


def experiment_b(runs, t: Mapping[str, Any]) -> list[Criterion]:
    """B1 and B2 read the original's amplitude measure: the late layers' residual-norm ratio
    (ablated / clean) at the final position; B2 passes when its bootstrap 95% interval over prompts
    lies inside the band (seed 0's, or every seed's). The recovered fraction (Rushing & Nanda) is
    reported beside them."""
    low, high = t["b_random_compensation"]
    out = []
    for id_, condition, statement, threshold in (
        ("B1", "critical", "ablating the name movers: the late layers' residual norm at the final position rises (after / before)",
         f"> {t['b_critical_compensation_min']}"),
        ("B2", "random", "ablating random heads (not name movers): the late layers' residual norm at the final position is unchanged",
         f"95% interval in [{low}, {high}]"),
    ):
        logs = runs.get(f"b_{condition}", [])
        values = _values(runs, f"b_{condition}", lambda log: summary_value(log, "late_final_position_norm_ratio"))
        delta = _values(runs, f"b_{condition}", lambda log: summary_value(log, "delta_logit_diff"))
        recovered = _values(runs, f"b_{condition}", lambda log: summary_value(log, "recovered_fraction"))
        intervals = [summary_value(log, "late_final_position_norm_ratio_ci95") for log in logs]
        detail = (f"mean over {len(values)} seed(s), 95% interval over prompts {intervals}; Δlogit_diff {format_value(_mean(delta))}; "
                  f"recovered fraction (Rushing & Nanda) {format_value(_mean(recovered))}")
        if id_ == "B1":
            out.append(_compare(id_, "b", statement, threshold, _mean(values), lambda v: v > t["b_critical_compensation_min"], detail,
                                values))
        elif not values or any(ci is None for ci in intervals):
            out.append(_missing(id_, "b", statement, threshold, "no random-head log with an interval"))
        else:
            inside = all(low <= ci[0] and ci[1] <= high for ci in intervals)
            out.append(Criterion(id_, "b", statement, threshold, {"mean": _mean(values), "ci95": intervals}, inside, detail))
    return out


def experiment_c(runs, t: Mapping[str, Any]) -> list[Criterion]:
    high = runs.get("c_high_wd", [])
    steps = [summary_value(log, "transition_step") for log in high]
    grokked = [s for s in steps if s is not None]
    out = [Criterion(
        "C1", "c", "high weight decay: test accuracy goes from below to above the thresholds (grokking)",
        f"test accuracy < {t['c_transition'][0]} then > {t['c_transition'][1]}",
        {"transition_steps": steps}, (len(grokked) == len(high)) if high else None,
        f"{len(grokked)} of {len(high)} seed(s) show the transition" if high else "not evaluable: no high_wd log",
    )]
    rho = _values(runs, "c_high_wd", lambda log: summary_value(log, "spearman_rho"))
    lagged = _values(runs, "c_high_wd", lambda log: (summary_value(log, "lagged_correlation") or {}).get("rho"))
    interval = t_interval(rho)[1]
    statement = ("high weight decay: test accuracy rises while A_param falls (Spearman ρ of their velocities "
                 "inside the transition: last log below 0.2 to first above 0.9)")
    threshold = f"< {t['c_rho_max']} (the 95% interval over seeds, where there are two or more)"
    secondary = f"lagged correlation (secondary) {format_value(_mean(lagged))}"
    within = [summary_value(log, "rho_ci95") for log in high if summary_value(log, "spearman_rho") is not None]
    if len(rho) == 1:
        # one seed: the verdict reads its ρ; the interval shown is the run's own (block bootstrap over its logged steps)
        out.append(Criterion("C2", "c", statement, threshold, rho[0], bool(rho[0] < t["c_rho_max"]),
                             f"one seed; 95% interval within the run {format_value(within[0])} (moving-block bootstrap over "
                             f"the window's logged steps, not over seeds); {secondary}", within[0]))
    else:
        out.append(_compare("C2", "c", statement, threshold, _mean(rho), lambda v: (interval[1] if interval else v) < t["c_rho_max"],
                            f"mean over {len(rho)} seed(s), 95% interval over seeds {format_value(interval)}; "
                            f"within each run {[format_value(ci) for ci in within]}; {secondary}", rho))

    def retained(log):
        final, peak = final_metric(log, "A_param"), peak_metric(log, "A_param")
        return None if final is None or not peak else final / peak

    kept = _values(runs, "c_no_wd", retained)
    high_kept = _values(runs, "c_high_wd", retained)
    no_wd_steps = [summary_value(log, "transition_step") for log in runs.get("c_no_wd", [])]
    no_transition = all(step is None for step in no_wd_steps)
    out.append(_compare("C3", "c", "no weight decay: A_param stays high (final / peak) and there is no sharp transition",
                        f"final / peak >= {t['c_no_wd_a_param_retained_min']} and no transition", _mean(kept),
                        lambda v: v >= t["c_no_wd_a_param_retained_min"] and no_transition,
                        f"no_wd transition steps {no_wd_steps}; high_wd keeps {format_value(_mean(high_kept))} of its peak", kept))
    return out


def experiment_d(runs, t: Mapping[str, Any]) -> list[Criterion]:
    """A run that finds no suppressor (or no clean) unit has no ratio: D1 and D2 are not evaluable
    there, and the precondition `D_groups` (both groups found in every seed) fails, so they are
    reported as not testable; the counts stand in that precondition's record."""
    logs = runs.get("d_superposition", [])
    statement = "suppressor units (found by ablation) vary more than clean units"
    threshold = f"variance ratio > {t['d_ratio_min']}"
    if not logs:
        return [_missing("D1", "d", statement, threshold, "no superposition log"),
                _missing("D2", "d", "the bootstrap 95% CI of the ratio excludes 1.0", "CI excludes 1.0", "no superposition log")]
    ratios = [summary_value(log, "ratio") for log in logs]
    notes = sorted({summary_value(log, "note") for log in logs if summary_value(log, "note")})
    groups = [f"seed {log['metadata']['seed']}: {summary_value(log, 'n_suppressors')} suppressor / "
              f"{summary_value(log, 'n_clean')} clean" for log in logs]
    holds = [(summary_value(log, "superposition") or {}).get("holds") for log in logs]
    detail = "; ".join(groups + notes + [f"in superposition (precondition, per seed): {holds}"])
    defined = [float(r) for r in ratios if r is not None]
    complete = len(defined) == len(ratios)
    out = [Criterion("D1", "d", statement, threshold, _mean(defined) if complete else None,
                     bool(_mean(defined) > t["d_ratio_min"]) if complete else None, detail)]
    cis = [summary_value(log, "ci95") for log in logs]
    excluded = [ci is not None and bool(ci[0] > 1.0 or ci[1] < 1.0) for ci in cis]
    out.append(Criterion("D2", "d", "the bootstrap 95% CI of the ratio excludes 1.0", "CI excludes 1.0", {"ci95": cis},
                         all(excluded) if complete else None, f"{sum(excluded)} of {len(cis)} seed(s) have an interval excluding 1.0"
                         + ("" if complete else "; a seed without a suppressor or a clean unit has no ratio")))
    return out


def aggregate(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Final Ψ per condition over seeds, with Cohen's d between the conditions the study compares."""
    def psi(log):
        return final_metric(log, "psi_accuracy") if final_metric(log, "psi_accuracy") is not None else final_metric(log, "psi_logit_diff")

    finals = {name: _values(runs, name, psi) for name in runs}
    pairs = [(a, b) for a, b in (("a_constraint", "a_naive_clamp"), ("a_control", "a_constraint"),
                                 ("a_mean_preserving_clamp", "a_naive_clamp"), ("c_high_wd", "c_no_wd"))
             if a in finals and b in finals]
    return aggregate_final(finals, pairs)


SOURCE = "shared/sources/003_*, Success Criteria"
SOURCES = {
    "A1": "Experiment A: Control ≥95% accuracy", "A2": "Experiment A: Constraint 55-65% accuracy",
    "A3": "Experiment A: A_activation > 2.0", "A4": "Experiment A: Naive clamp <5% accuracy (catastrophic)",
    "A5": "Experiment A: Mean-preserving ≥90% of constraint", "A6": "Statistical analysis: Expected: d > 4.0 (very large effect)",
    "B1": "Experiment B: Critical ablation: Compensation > 1.3× in layers 10-12",
    "B2": "Experiment B: Random ablation: Compensation ≈ 1.0× (no effect)",
    "C1": "Experiment C: High WD: Phase transition visible", "C2": "Experiment C: ρ(acc, A_param) < -0.3",
    "C3": "Experiment C: No WD: A_param stays high, no sharp transition",
    "D1": "Experiment D: Suppressor variance > 2.0× clean variance", "D2": "Experiment D: Bootstrap CI excludes 1.0 with 95% confidence",
}
HYPOTHESIS = "Separability is conserved (Ψ = G + A): constrained routing is paid for by amplitude."
CLAMP_EFFECT_MIN = 0.01  # ours: a clamp that changes what it clamps by less than 1% is a no-op
NAIVE_ACTS, MEAN_PRESERVING_ACTS, SUPERPOSITION = "A_naive_clamp_acts", "A_mean_preserving_clamp_acts", "D_superposition"
GROUPS = "D_groups"
DEPENDS_ON = {"A2": ("A1",), "A3": ("A1",), "A4": ("A1", NAIVE_ACTS), "A5": ("A1", MEAN_PRESERVING_ACTS),
              "A6": ("A1", NAIVE_ACTS), "D1": (SUPERPOSITION, GROUPS), "D2": (SUPERPOSITION, GROUPS)}


def clamp_effect(log: Mapping[str, Any]) -> float | None:
    """How much a clamp changed what it clamps over the run: the median step's |scale factor − 1|
    (the run's ``clamp_effect`` summary, from the factors logged at every step); None without one."""
    effect = summary_value(log, "clamp_effect") or {}
    if not effect.get("n_steps"):
        return None
    return math.expm1(float(effect["median_abs_log"]))


def superposition_holds(log: Mapping[str, Any]) -> float | None:
    """The share of experiment D's model instances in superposition (Elhage et al.: more features
    represented, ‖W_i‖ above the threshold, than hidden dimensions, with interference between them)."""
    measures = summary_value(log, "superposition")
    if not measures or not measures.get("instances"):
        return None
    return measures["n_instances_in_superposition"] / len(measures["instances"])


def preconditions(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Record]:
    """Whether the clamps act and the experiment-D model is in superposition (ours, from the logs)."""
    out = []
    for id_, run, what in ((NAIVE_ACTS, "a_naive_clamp", "the clamped stream's mean token norm"),
                           (MEAN_PRESERVING_ACTS, "a_mean_preserving_clamp", "the clamped stream's variance")):
        effects = _values(runs, run, clamp_effect)
        mean, ci = t_interval(effects)
        out.append(record(id_, f"the {run.removeprefix('a_').replace('_', ' ')} changes {what} where it is applied "
                          "(|scale factor − 1| of the median training step, mean over seeds)", OURS, PRECONDITION,
                          f">= {CLAMP_EFFECT_MIN} (ours)", mean if effects else None,
                          bool(mean >= CLAMP_EFFECT_MIN) if effects else None,
                          "" if effects else f"no {run} log with the clamp's scale factors", ci))
    shares = _values(runs, "d_superposition", superposition_holds)
    mean, ci = t_interval(shares)
    out.append(record(SUPERPOSITION, "every experiment-D model instance is in superposition: more features represented "
                      "(‖W_i‖ > 0.5) than hidden dimensions, with interference between them (share of instances, mean over seeds)",
                      OURS, PRECONDITION, "= 1 (every instance; ours)", mean if shares else None,
                      bool(mean >= 1.0) if shares else None, "" if shares else "no superposition log with its measures", ci))
    logs = runs.get("d_superposition", [])
    counts = [(summary_value(log, "n_suppressors"), summary_value(log, "n_clean")) for log in logs]
    both = [bool(sup) and bool(clean) for sup, clean in counts]
    out.append(record(GROUPS, "the ablation finds both groups D compares in every seed: at least one suppressor unit and one "
                      "clean unit (share of seeds); the finder recovers a planted suppressor (tests)", OURS, PRECONDITION,
                      "= 1 (every seed; ours)", sum(both) / len(both) if both else None, all(both) if both else None,
                      "; ".join(f"seed {log['metadata']['seed']}: {sup} suppressor / {clean} clean"
                                for log, (sup, clean) in zip(logs, counts)) or "no superposition log"))
    return out


def as_record(c: Criterion) -> Record:
    """An experiment's criterion as a weightlab.verdicts record (A1 is a precondition)."""
    kind = PRECONDITION if c.id == "A1" else EXPECTATION
    reason = c.detail
    if c.passed is None and not reason.startswith("not evaluable"):
        reason = f"not evaluable: {reason}" if reason else "not evaluable"
    return record(c.id, c.statement, f"{SOURCE}: {SOURCES[c.id]}", kind, c.threshold, c.measured, c.passed, reason,
                  c.interval, DEPENDS_ON.get(c.id, ()))


def evaluate(logs: Iterable[Mapping[str, Any]], thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """Every criterion of experiments A–D as a record, with the preconditions, judged into the
    study verdict; the per-condition aggregate and the seeds of every run."""
    runs = by_run(logs)
    criteria = [*experiment_a(runs, thresholds), *experiment_b(runs, thresholds),
                *experiment_c(runs, thresholds), *experiment_d(runs, thresholds)]
    records = [*preconditions(runs), *map(as_record, criteria)]
    return {**criteria_document("separability", HYPOTHESIS, records), "aggregate": aggregate(runs),
            "seeds": {name: [log["metadata"]["seed"] for log in group] for name, group in runs.items()}}


def criteria_table(result: Mapping[str, Any]) -> str:
    """The criteria as a plain-text table (for logs and the README), with the study verdict."""
    rows = [f"{'id':<28} {'kind':<12} {'result':<14} {'measured':<28} threshold · statement"]
    for c in result["criteria"]:
        verdict = c["verdict"].replace("_", " ").replace("fail", "FAIL")
        measured = c["value"] if not isinstance(c["value"], float) else f"{c['value']:.4g}"
        rows.append(f"{c['id']:<28} {c['kind']:<12} {verdict:<14} {str(measured):<28} {c['threshold']} · {c['statement']}")
    rows.append(f"study verdict: {result['verdict']} ({result['reason']})")
    return "\n".join(rows)
