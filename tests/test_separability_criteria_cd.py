"""Experiments C and D's success criteria and the study's preconditions, each record compared whole
(its statement aside: a sentence for people) with one worked out by hand on constructed audit logs.

95% intervals over two seeds: mean ± t(0.975, 1 df) · sd / √2, t = 12.7062047."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from test_separability_criteria import THRESHOLDS, log  # the schema's default thresholds; one audit log

from weightlab.separability.criteria import by_run, experiment_c, experiment_d, preconditions


def a_param(*values: float) -> list[dict]:
    return [{"A_param": v} for v in values]


def superposition(in_superposition: int, instances: int = 2) -> dict:
    """Experiment D's superposition measures: `in_superposition` of `instances` model instances."""
    return {"instances": [{} for _ in range(instances)], "n_instances_in_superposition": in_superposition,
            "holds": in_superposition == instances}


def clamp_effect(effect: float) -> dict:
    """A clamp's run summary whose median step changed what it clamps by |factor − 1| = `effect`."""
    return {"n_steps": 10, "median_abs_log": math.log1p(effect)}


def rounded(value: Any) -> Any:
    """Floats rounded to 4 decimals, through lists and dicts (hand-computed values carry 4)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def fields(record) -> dict:
    """A record's fields (a Criterion of criteria.py or of weightlab.verdicts) without its statement."""
    out = dataclasses.asdict(record)
    out.pop("statement")
    return rounded(out)


def c_logs() -> list[dict]:
    """High weight decay: seed 0 groks at step 900 and keeps 5/10 of its A_param peak, seed 1 never
    groks and keeps 2/8; no weight decay keeps 9.5/10 and 9/10 and never transitions."""
    return [
        log("c_high_wd", 0, a_param(10.0, 5.0), transition_step=900, spearman_rho=-0.5, rho_ci95=[-0.8, -0.2],
            lagged_correlation={"rho": -0.4}),
        log("c_high_wd", 1, a_param(8.0, 2.0), transition_step=None, spearman_rho=-0.7, rho_ci95=[-0.9, -0.4],
            lagged_correlation={"rho": -0.2}),
        log("c_no_wd", 0, a_param(10.0, 9.5), transition_step=None),
        log("c_no_wd", 1, a_param(10.0, 9.0), transition_step=None),
    ]


def test_experiment_c_records_on_two_seeds():
    c1, c2, c3 = map(fields, experiment_c(by_run(c_logs()), THRESHOLDS))
    assert c1 == {"id": "C1", "experiment": "c", "threshold": "test accuracy < 0.2 then > 0.9",
                  "measured": {"transition_steps": [900, None]}, "passed": False,
                  "detail": "1 of 2 seed(s) show the transition", "interval": None}
    # ρ: mean −0.6, sd 0.1414 → interval −0.6 ± 1.2706, whose upper end is far above −0.3: two seeds are too few
    assert c2 == {"id": "C2", "experiment": "c", "threshold": "< -0.3 (the 95% interval over seeds, where there are two or more)",
                  "measured": -0.6, "passed": False, "interval": [-1.8706, 0.6706],
                  "detail": "mean over 2 seed(s), 95% interval over seeds [−1.871, 0.6706]; "
                            "within each run ['[−0.8, −0.2]', '[−0.9, −0.4]']; lagged correlation (secondary) −0.3"}
    # no weight decay keeps 0.95 and 0.9 of its peak (mean 0.925 ± 0.3177); high weight decay 0.5 and 0.25
    assert c3 == {"id": "C3", "experiment": "c", "threshold": "final / peak >= 0.9 and no transition", "measured": 0.925,
                  "passed": True, "interval": [0.6073, 1.2427],
                  "detail": "no_wd transition steps [None, None]; high_wd keeps 0.375 of its peak"}


def test_experiment_c_without_logs_is_not_evaluable_and_says_why():
    c1, c2, c3 = map(fields, experiment_c({}, THRESHOLDS))
    assert c1 == {"id": "C1", "experiment": "c", "threshold": "test accuracy < 0.2 then > 0.9", "measured": {"transition_steps": []},
                  "passed": None, "detail": "not evaluable: no high_wd log", "interval": None}
    assert c2 == {"id": "C2", "experiment": "c", "threshold": "< -0.3 (the 95% interval over seeds, where there are two or more)",
                  "measured": None, "passed": None, "interval": None,
                  "detail": "not evaluable: mean over 0 seed(s), 95% interval over seeds —; within each run []; "
                            "lagged correlation (secondary) —"}
    assert c3 == {"id": "C3", "experiment": "c", "threshold": "final / peak >= 0.9 and no transition", "measured": None,
                  "passed": None, "interval": None,
                  "detail": "not evaluable: no_wd transition steps []; high_wd keeps — of its peak"}


def test_c2_at_its_threshold_fails_on_one_seed_and_when_its_interval_touches_it():
    """ρ must lie below −0.3: one seed at exactly −0.3 fails (the run's own interval shown), and so do two
    seeds at −0.3, whose interval over seeds is the point [−0.3, −0.3]."""
    one = log("c_high_wd", 0, a_param(10.0, 5.0), transition_step=900, spearman_rho=-0.3, rho_ci95=[-0.6, 0.1])
    c2 = fields(experiment_c(by_run([one]), THRESHOLDS)[1])
    assert c2 == {"id": "C2", "experiment": "c", "threshold": "< -0.3 (the 95% interval over seeds, where there are two or more)",
                  "measured": -0.3, "passed": False, "interval": [-0.6, 0.1],
                  "detail": "one seed; 95% interval within the run [−0.6, 0.1] (moving-block bootstrap over the window's "
                            "logged steps, not over seeds); lagged correlation (secondary) —"}
    two = [one, {**one, "metadata": {"experiment": "c_high_wd", "seed": 1}}]
    c2 = experiment_c(by_run(two), THRESHOLDS)[1]
    assert (c2.measured, c2.interval, c2.passed) == (-0.3, [-0.3, -0.3], False)


def test_c3_at_its_threshold_passes_and_a_run_without_an_a_param_peak_has_no_retention():
    """Retention final / peak = 9 / 10 is exactly the minimum 0.9 (passes); a no_wd run whose A_param was
    never logged, or stayed 0, has no retention (C3 not evaluable rather than a division error)."""
    at_minimum = [log("c_no_wd", 0, a_param(10.0, 9.0), transition_step=None)]
    c3 = experiment_c(by_run(at_minimum), THRESHOLDS)[2]
    assert (c3.measured, c3.passed) == (0.9, True)
    for metrics in ([{"loss": 1.0}], a_param(0.0, 0.0)):
        c3 = experiment_c(by_run([log("c_no_wd", 0, metrics, transition_step=None)]), THRESHOLDS)[2]
        assert (c3.measured, c3.passed) == (None, None)
        assert c3.detail == "not evaluable: no_wd transition steps [None]; high_wd keeps — of its peak"


def d_log(seed: int, ratio, ci, n_suppressors: int, n_clean: int = 30, in_superposition: int = 2, **summary) -> dict:
    return log("d_superposition", seed, [{"loss": 1.0}], ratio=ratio, ci95=ci, n_suppressors=n_suppressors, n_clean=n_clean,
               superposition=superposition(in_superposition), **summary)


def test_experiment_d_records_on_two_seeds():
    logs = [d_log(0, 2.5, [1.2, 3.0], 3), d_log(1, 3.5, [1.5, 5.0], 2, n_clean=31, in_superposition=1, note="a planted note")]
    d1, d2 = map(fields, experiment_d(by_run(logs), THRESHOLDS))
    assert d1 == {"id": "D1", "experiment": "d", "threshold": "variance ratio > 2.0", "measured": 3.0, "passed": True,
                  "interval": None,
                  "detail": "seed 0: 3 suppressor / 30 clean; seed 1: 2 suppressor / 31 clean; a planted note; "
                            "in superposition (precondition, per seed): [True, False]"}
    assert d2 == {"id": "D2", "experiment": "d", "threshold": "CI excludes 1.0", "measured": {"ci95": [[1.2, 3.0], [1.5, 5.0]]},
                  "passed": True, "interval": None, "detail": "2 of 2 seed(s) have an interval excluding 1.0"}


def test_experiment_d_with_a_seed_without_a_ratio_is_not_evaluable():
    """A seed that found no suppressor has no ratio: neither the other seed's ratio nor its interval is judged alone."""
    logs = [d_log(0, 2.5, [1.2, 3.0], 3), d_log(1, None, None, 0, note="no suppressor unit: the ratio is undefined")]
    d1, d2 = map(fields, experiment_d(by_run(logs), THRESHOLDS))
    assert d1 == {"id": "D1", "experiment": "d", "threshold": "variance ratio > 2.0", "measured": None, "passed": None,
                  "interval": None,
                  "detail": "seed 0: 3 suppressor / 30 clean; seed 1: 0 suppressor / 30 clean; no suppressor unit: the ratio "
                            "is undefined; in superposition (precondition, per seed): [True, True]"}
    assert d2 == {"id": "D2", "experiment": "d", "threshold": "CI excludes 1.0", "measured": {"ci95": [[1.2, 3.0], None]},
                  "passed": None, "interval": None,
                  "detail": "1 of 2 seed(s) have an interval excluding 1.0; a seed without a suppressor or a clean unit has no ratio"}


def test_experiment_d_at_its_thresholds_fails():
    """A ratio of exactly 2.0 is not above 2.0; an interval that ends or starts at 1.0 does not exclude 1.0."""
    d1, d2 = experiment_d(by_run([d_log(0, 2.0, [1.0, 3.0], 3), d_log(1, 2.0, [0.5, 1.0], 3)]), THRESHOLDS)
    assert (d1.measured, d1.passed) == (2.0, False)
    assert (d2.passed, d2.detail) == (False, "0 of 2 seed(s) have an interval excluding 1.0")


def test_experiment_d_without_logs_is_not_evaluable_and_says_why():
    d1, d2 = map(fields, experiment_d({}, THRESHOLDS))
    assert d1 == {"id": "D1", "experiment": "d", "threshold": "variance ratio > 2.0", "measured": None, "passed": None,
                  "interval": None, "detail": "not evaluable: no superposition log"}
    assert d2 == {"id": "D2", "experiment": "d", "threshold": "CI excludes 1.0", "measured": None, "passed": None,
                  "interval": None, "detail": "not evaluable: no superposition log"}


def test_preconditions_records():
    """The naive clamp changes the norm by 0.2 and 0.4 (mean 0.3 ± 1.2706); no mean-preserving clamp ran;
    one D seed has both its instances in superposition, the other one of two (mean 0.75 ± 3.1766), and
    the second found no suppressor."""
    logs = [log("a_naive_clamp", 0, [], clamp_effect=clamp_effect(0.2)), log("a_naive_clamp", 1, [], clamp_effect=clamp_effect(0.4)),
            d_log(0, 2.5, [1.2, 3.0], 3), d_log(1, None, None, 0, n_clean=31, in_superposition=1)]
    records = preconditions(by_run(logs))
    assert records[0].statement.startswith("the naive clamp changes the clamped stream's mean token norm where it is applied")
    assert records[1].statement.startswith("the mean preserving clamp changes the clamped stream's variance where it is applied")
    common = {"source": "ours", "kind": "precondition", "depends_on": []}
    assert [fields(r) for r in records] == [
        {**common, "id": "A_naive_clamp_acts", "threshold": ">= 0.01 (ours)", "value": 0.3, "interval": [-0.9706, 1.5706],
         "verdict": "pass", "reason": ""},
        {**common, "id": "A_mean_preserving_clamp_acts", "threshold": ">= 0.01 (ours)", "value": None, "interval": None,
         "verdict": "not_evaluable", "reason": "no a_mean_preserving_clamp log with the clamp's scale factors"},
        {**common, "id": "D_superposition", "threshold": "= 1 (every instance; ours)", "value": 0.75, "interval": [-2.4266, 3.9266],
         "verdict": "fail", "reason": ""},
        {**common, "id": "D_groups", "threshold": "= 1 (every seed; ours)", "value": 0.5, "interval": None, "verdict": "fail",
         "reason": "seed 0: 3 suppressor / 30 clean; seed 1: 0 suppressor / 31 clean"},
    ]


def test_preconditions_at_the_clamp_minimum_and_without_logs():
    """A clamp that changes what it clamps by exactly 1% acts (>= 0.01); without any log nothing is evaluable."""
    acts = preconditions(by_run([log("a_mean_preserving_clamp", 0, [], clamp_effect=clamp_effect(0.01))]))[1]
    assert (acts.value, acts.verdict, acts.reason, acts.interval) == (0.01, "pass", "", None)
    records = preconditions({})
    assert [(r.id, r.value, r.verdict, r.reason, r.interval) for r in records] == [
        ("A_naive_clamp_acts", None, "not_evaluable", "no a_naive_clamp log with the clamp's scale factors", None),
        ("A_mean_preserving_clamp_acts", None, "not_evaluable", "no a_mean_preserving_clamp log with the clamp's scale factors", None),
        ("D_superposition", None, "not_evaluable", "no superposition log with its measures", None),
        ("D_groups", None, "not_evaluable", "no superposition log", None),
    ]
