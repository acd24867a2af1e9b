"""The retrofit study's criteria (weightlab.verdicts) from summary.json: preconditions (the baseline
is measurable, standard training works) and the original's expected results
(shared/sources/002_*, "Expected Results"), whose "~" numbers are read with thresholds of ours.

The original's table: standard "Minimal (~3%)", gram only "Moderate (~15%)", full geometry "Good
(~30%)", perplexity falling with each (10.9 → 10.7, 9.8, 9.2). How "about" is read (ours):
standard changes FFN Gram conditioning by at most 5% either way; gram lowers it by at least 10%;
geometry by at least 20%; gram and geometry end with a validation perplexity no worse than the
baseline's. One run per method: no interval.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from weightlab.verdicts import EXPECTATION, OURS, PRECONDITION, Criterion, criteria_document, criterion

HYPOTHESIS = ("Post-hoc geometry training (Gram regulariser, then transport) improves a pretrained model's FFN conditioning "
              "and perplexity, more than standard continued training.")
SOURCE = "shared/sources/002_*, Expected Results"
STANDARD_CHANGE_MAX = 0.05  # ours: "Minimal (~3%)"
GRAM_DROP_MIN = 0.10  # ours: "Moderate (~15%)"
GEOMETRY_DROP_MIN = 0.20  # ours: "Good (~30%)"
FINITE, LEARNS = "baseline_perplexity_finite", "standard_lowers_validation_loss"


def _run(summary: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return summary.get("runs", {}).get(name, {})


def retrofit_criteria(summary: Mapping[str, Any]) -> list[Criterion]:
    base = summary["baseline"]
    base_ppl = base.get("perplexity")
    finite = base_ppl is not None and math.isfinite(base_ppl)
    standard = _run(summary, "standard")
    needs = (FINITE, LEARNS)

    def change(name: str) -> float | None:
        return _run(summary, name).get("conditioning_change")

    def conditioning(id_: str, name: str, statement: str, quoted: str, threshold: str, test) -> Criterion:
        value = change(name)
        return criterion(id_, statement, f"{SOURCE}: {quoted}", EXPECTATION, threshold,
                         value, None if value is None else test(value), "" if value is not None else f"no {name} run",
                         depends_on=needs)

    def no_worse(name: str, quoted: str) -> Criterion:
        ppl = _run(summary, name).get("final_perplexity")
        return criterion(f"{name}_perplexity_no_worse", f"{name}: validation perplexity no worse than the baseline's",
                         f"{SOURCE}: {quoted}", EXPECTATION, f"<= baseline perplexity {base_ppl:.4g}" if finite else "<= baseline",
                         ppl, None if ppl is None or not finite else ppl <= base_ppl, "" if ppl is not None else f"no {name} run",
                         depends_on=needs)

    standard_ppl = standard.get("final_perplexity")
    return [
        criterion(FINITE, "the unmodified baseline's validation perplexity is finite", OURS, PRECONDITION, "finite", base_ppl, finite),
        criterion(LEARNS, "standard continued training lowers the validation loss (the training itself works)", OURS, PRECONDITION,
                  "final perplexity < baseline perplexity", {"standard": standard_ppl, "baseline": base_ppl},
                  None if standard_ppl is None or not finite else standard_ppl < base_ppl,
                  "" if standard_ppl is not None else "no standard run", depends_on=(FINITE,)),
        conditioning("standard_conditioning_about_unchanged", "standard", "standard training changes FFN Gram conditioning little",
                     "+ Standard: Minimal (~3%)", f"|relative change| <= {STANDARD_CHANGE_MAX} (ours)",
                     lambda v: abs(v) <= STANDARD_CHANGE_MAX),
        conditioning("gram_lowers_conditioning", "gram_only", "the Gram regulariser lowers FFN Gram conditioning moderately",
                     "+ Gram Only: Moderate (~15%)", f"relative change <= −{GRAM_DROP_MIN} (ours)", lambda v: v <= -GRAM_DROP_MIN),
        conditioning("geometry_lowers_conditioning", "geometry", "full geometry (Gram + transport) lowers FFN Gram conditioning most",
                     "+ Full Geometry: Good (~30%)", f"relative change <= −{GEOMETRY_DROP_MIN} (ours)",
                     lambda v: v <= -GEOMETRY_DROP_MIN),
        no_worse("gram_only", "+ Gram Only: ~9.8 PPL from 10.9"),
        no_worse("geometry", "+ Full Geometry: ~9.2 PPL from 10.9"),
    ]


def criteria_json(summary: Mapping[str, Any]) -> dict[str, Any]:
    """results/retrofit/criteria.json without its provenance."""
    return criteria_document("retrofit", HYPOTHESIS, retrofit_criteria(summary))
