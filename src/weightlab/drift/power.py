"""Can the drift analysis tell H1 from no differential drift on this run? A planted effect.

The measured drift of every trained neuron (`effects.Population`) is taken as it is; a random
group of control neurons with the safety group's per-module counts is drawn, and its values
are shifted up by `shift` within-module standard deviations of the measure (so the planted
effect is d = `shift` on the analysis' own scale), then the primary analysis
(`effects.compare_group` against the module- and norm-matched control, cluster bootstrap)
runs on it. Repeated over `repeats` random groups, the fraction read H1 is the power at that
shift; at shift 0 the fraction read ``no_differential_drift`` is the equivalence test's power
when there is truly no difference. The smallest shift with power ≥ `target` is the smallest
effect the run can detect.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from weightlab.drift.effects import CONTROLS, MEASURE_VALUES, Population, Thresholds, classify, compare_group, within_sd
from weightlab.errors import InputError

SHIFTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def planted_group(module: np.ndarray, counts: Mapping[int, int], eligible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mask of a uniformly drawn group with `counts[m]` eligible neurons in module m."""
    mask = np.zeros(len(module), dtype=bool)
    for m, k in counts.items():
        pool = np.flatnonzero(eligible & (module == m))
        if k > len(pool):
            raise InputError(f"module {m} has {len(pool)} eligible neurons, fewer than the {k} a planted group needs.")
        mask[rng.choice(pool, size=k, replace=False)] = True
    return mask


def power_curve(population: Population, in_group: np.ndarray, is_control: np.ndarray, measure: str, thresholds: Thresholds,
                shifts: Sequence[float] = SHIFTS, repeats: int = 20, target: float = 0.8, seed: int = 0) -> dict[str, Any]:
    """Power of the primary analysis to read H1 at each planted shift (in within-module SDs of
    the measure), for groups shaped like `in_group` drawn from the control neurons.

    Each random group is analysed once, unshifted: adding δ·σ to its values moves its matched
    difference by exactly δ·σ in every bootstrap resample (its matched controls, chosen by norm,
    and the scale σ of the measured population do not depend on δ), so d and both intervals move
    by δ and the reading at every shift follows without re-running the analysis."""
    if repeats < 1:
        raise InputError(f"the power check needs at least one repeat, got {repeats}.")
    module = population.module
    is_control = np.asarray(is_control, dtype=bool)
    modules, counts = np.unique(module[np.asarray(in_group, dtype=bool)], return_counts=True)
    shape = dict(zip(modules.tolist(), counts.tolist()))
    rng = np.random.default_rng([seed, 21])
    unshifted = []
    for r in range(repeats):
        planted = planted_group(module, shape, is_control, rng)
        unshifted.append(compare_group(population, planted, is_control & ~planted, measure, thresholds, seed + r, controls=CONTROLS[:1])[CONTROLS[0]])
    rows = []
    for shift in shifts:
        readings = [classify(u["d"] + shift, _moved(u["ci"], shift), _moved(u["equivalence_ci"], shift), thresholds.margin, thresholds.h1_min_d)
                    for u in unshifted]
        rows.append({"shift_d": float(shift), "power_h1": float(np.mean([x == "H1" for x in readings])),
                     "no_differential_drift": float(np.mean([x == "no_differential_drift" for x in readings])),
                     "mean_d": float(np.mean([u["d"] for u in unshifted]) + shift), "repeats": repeats})
    detectable = [row["shift_d"] for row in rows if row["shift_d"] > 0 and row["power_h1"] >= target]
    return {"measure": measure, "control": CONTROLS[0], "target_power": target, "curve": rows,
            "smallest_detectable_d": min(detectable) if detectable else None,
            "equivalence_power_at_zero": next((row["no_differential_drift"] for row in rows if row["shift_d"] == 0), None),
            "null_d": {"mean": float(np.mean([u["d"] for u in unshifted])), "sd": float(np.std([u["d"] for u in unshifted]))}}


def _moved(interval: Sequence[float] | None, shift: float) -> list[float] | None:
    return None if interval is None else [interval[0] + shift, interval[1] + shift]


def shifted_population(population: Population, planted: np.ndarray, measure: str, shift: float) -> Population:
    """The population with the planted group's values of `measure` raised by `shift` within-module
    SDs (what `power_curve` reads off without building it; for checking that shortcut)."""
    key = MEASURE_VALUES.get(measure, measure)
    values = population.values[key]
    scale = within_sd(values, population.module)
    return Population(population.module, population.norm, {**population.values, key: np.where(planted, values + shift * scale, values)})
