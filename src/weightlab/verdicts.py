"""One criterion record for every study, and the study verdict judged from a list of them.

A criterion is a `precondition` (the experiment is able to test the hypothesis: the control learns
the task, the intervention changes what it claims, the fine-tuning learns), an `expectation` (the
original study's expected result) or a `check` (ours, never in the verdict). Each has a threshold,
the measured value(s), a 95% interval where there are seeds or samples, and a verdict:

- ``pass`` / ``fail``: measured against the threshold;
- ``not_evaluable``: the value could not be computed (one seed for a Cohen's d, an empty group);
  the reason says why;
- ``not_testable``: a precondition it depends on did not pass (failed, not evaluable, or itself
  not testable); the reason names them. An expectation is never ``fail`` when a precondition it
  needs did not pass: the experiment could not have come out the other way.

The study verdict reads the expectations only: ``held`` when every one passes, ``not held`` when
some expectation fails (all its preconditions passed), otherwise ``not testable`` (a needed
precondition did not pass, or an expectation could not be evaluated), with the reason.
Torch-free: study summaries and the report's parse step import it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

PRECONDITION, EXPECTATION, CHECK = "precondition", "expectation", "check"
KINDS = (PRECONDITION, EXPECTATION, CHECK)
PASS, FAIL, NOT_EVALUABLE, NOT_TESTABLE = "pass", "fail", "not_evaluable", "not_testable"
VERDICTS = (PASS, FAIL, NOT_EVALUABLE, NOT_TESTABLE)
HELD, NOT_HELD, STUDY_NOT_TESTABLE = "held", "not held", "not testable"
OURS = "ours"
CRITERIA_FILE = "criteria.json"  # results/<study>/criteria.json


@dataclass(frozen=True)
class Criterion:
    """One criterion of a study: what is claimed, where it comes from, how it was measured, and the verdict."""

    id: str
    statement: str
    source: str  # the original document's line, or "ours"
    kind: str  # precondition | expectation | check
    threshold: Any  # text (or a small mapping) saying what passes
    value: Any = None  # the measured value(s)
    interval: list[float] | None = None  # 95% interval of the value over seeds, pairs or samples
    verdict: str = NOT_EVALUABLE
    reason: str = ""
    depends_on: tuple[str, ...] = field(default_factory=tuple)  # ids of the preconditions it needs

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"criterion {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"criterion {self.id}: verdict must be one of {VERDICTS}, got {self.verdict!r}")
        for name in ("id", "statement", "source"):  # a record says what it claims and where the claim comes from
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"criterion {self.id}: {name} must be a non-empty text, got {getattr(self, name)!r}")
        if self.threshold is None or self.threshold == "":
            raise ValueError(f"criterion {self.id}: a threshold (what passes) is required")
        object.__setattr__(self, "depends_on", tuple(self.depends_on))

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["depends_on"] = list(self.depends_on)
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Criterion":
        values = dict(record)
        values["depends_on"] = tuple(values.get("depends_on") or ())
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def criterion(
    id: str, statement: str, source: str, kind: str, threshold: Any, value: Any, passed: bool | None,
    reason: str = "", interval: Sequence[float] | None = None, depends_on: Iterable[str] = (),
) -> Criterion:
    """A criterion from a test outcome: `passed` None means not evaluable (say why in `reason`)."""
    verdict = NOT_EVALUABLE if passed is None else PASS if passed else FAIL
    if passed is None and not reason:
        reason = "no measured value"
    return Criterion(id, statement, source, kind, threshold, value, None if interval is None else [float(v) for v in interval],
                     verdict, reason, tuple(depends_on))


def judge(criteria: Sequence[Criterion]) -> list[Criterion]:
    """The criteria with dependencies applied, in their order: any criterion (expectation, check or
    precondition) that depends on a precondition which did not pass becomes ``not_testable``, its
    reason naming those preconditions and their verdicts (its own measurement is kept)."""
    by_id = {c.id: c for c in criteria}
    if len(by_id) != len(criteria):
        raise ValueError(f"criterion ids must be unique: {[c.id for c in criteria]}")
    for c in criteria:
        for needed in c.depends_on:
            if needed not in by_id:
                raise ValueError(f"criterion {c.id} depends on unknown criterion {needed!r}")
            if by_id[needed].kind != PRECONDITION:
                raise ValueError(f"criterion {c.id} depends on {needed}, which is a {by_id[needed].kind}, not a precondition")
    judged: dict[str, Criterion] = {}

    def resolve(c: Criterion, path: tuple[str, ...]) -> Criterion:
        if c.id in judged:
            return judged[c.id]
        if c.id in path:
            raise ValueError(f"criteria depend on each other in a cycle: {' -> '.join((*path, c.id))}")
        blocking = [resolve(by_id[d], (*path, c.id)) for d in c.depends_on]
        blocking = [b for b in blocking if b.verdict != PASS]
        if blocking:
            own = f" (measured: {c.verdict}{', ' + c.reason if c.reason else ''})"
            why = "; ".join(f"{b.id} {b.verdict.replace('_', ' ')}" for b in blocking)
            c = replace(c, verdict=NOT_TESTABLE, reason=f"precondition not met: {why}{own}")
        judged[c.id] = c
        return c

    return [resolve(c, ()) for c in criteria]


def study_verdict(criteria: Sequence[Criterion]) -> dict[str, Any]:
    """{'verdict': held | not held | not testable, 'reason': ..., 'counts': ...} from judged criteria."""
    criteria = judge(criteria)
    expectations = [c for c in criteria if c.kind == EXPECTATION]
    counts = {kind: {v: sum(c.verdict == v for c in criteria if c.kind == kind) for v in VERDICTS} for kind in KINDS}
    failed = [c for c in expectations if c.verdict == FAIL]
    untestable = [c for c in expectations if c.verdict == NOT_TESTABLE]
    unevaluable = [c for c in expectations if c.verdict == NOT_EVALUABLE]
    blockers = sorted({d for c in untestable for d in c.depends_on
                       if next(x for x in criteria if x.id == d).verdict != PASS})
    blocked = f"{len(untestable)} expectation(s) not testable: precondition(s) {', '.join(blockers)} not met" if untestable else ""
    unknown = f"{', '.join(c.id for c in unevaluable)} not evaluable" if unevaluable else ""
    if not expectations:
        verdict, reason = STUDY_NOT_TESTABLE, "no expectation was stated"
    elif failed:
        verdict = NOT_HELD
        reason = "; ".join(x for x in (f"{', '.join(c.id for c in failed)} failed with every precondition met", blocked, unknown) if x)
    elif untestable or unevaluable:
        verdict, reason = STUDY_NOT_TESTABLE, "; ".join(x for x in (blocked, unknown) if x)
    else:
        verdict, reason = HELD, f"all {len(expectations)} expectations pass with every precondition met"
    return {"verdict": verdict, "reason": reason, "counts": counts}


def criteria_document(study: str, hypothesis: str, criteria: Sequence[Criterion]) -> dict[str, Any]:
    """results/<study>/criteria.json without its provenance: the judged criteria and the verdict."""
    judged = judge(criteria)
    return {"study": study, "hypothesis": hypothesis, **study_verdict(judged), "criteria": [c.as_dict() for c in judged]}


def criteria_of(document: Mapping[str, Any]) -> list[Criterion]:
    """The criteria of a criteria document (read back from JSON)."""
    return [Criterion.from_dict(record) for record in document["criteria"]]


def ordered(criteria: Iterable[Criterion]) -> list[Criterion]:
    """Preconditions first, then expectations, then checks (each kind in its given order)."""
    criteria = list(criteria)
    return sorted(criteria, key=lambda c: KINDS.index(c.kind))


# ----------------------------------------------------------------------------- intervals


def t_interval(values: Iterable[float | None], confidence: float = 0.95) -> tuple[float, list[float] | None]:
    """Mean and the Student-t `confidence` interval of the mean over seeds or pairs (the finite
    values); the interval is None with fewer than two values."""
    from weightlab.stats import mean_interval

    result = mean_interval([v for v in values if v is not None and math.isfinite(float(v))], confidence)
    return result["mean"], result[f"ci{round(confidence * 100)}"]


def difference_interval(first: Iterable[float | None], second: Iterable[float | None],
                        confidence: float = 0.95) -> tuple[float, list[float] | None]:
    """mean(first) − mean(second) and its Welch t `confidence` interval (independent groups, e.g.
    different- vs same-mechanism pairs); the interval is None when a group has fewer than two
    values, and [d, d] when neither group varies."""
    import numpy as np
    from scipy import stats

    a = np.asarray([float(v) for v in first if v is not None and math.isfinite(float(v))])
    b = np.asarray([float(v) for v in second if v is not None and math.isfinite(float(v))])
    difference = float(a.mean() - b.mean()) if a.size and b.size else float("nan")
    if a.size < 2 or b.size < 2:
        return difference, None
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return difference, [difference, difference]
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return difference, [float(ci.low), float(ci.high)]


def _rst_text(text: str) -> str:
    """Text that reStructuredText shows as it is (markup characters escaped)."""
    for char in ("\\", "*", "`", "_", "|"):
        text = text.replace(char, "\\" + char)
    return text


def read_verdicts(documents: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """{title: {'verdict', 'reason'}} from the criteria files that exist (title -> path), the text
    escaped for reStructuredText (the report's start page); a missing or unreadable file is left
    out, so a report of a partial run shows what it has."""
    import json
    from pathlib import Path

    verdicts = {}
    for title, path in documents.items():
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            verdicts[title] = {"verdict": _rst_text(str(document["verdict"])), "reason": _rst_text(str(document["reason"]))}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return verdicts
