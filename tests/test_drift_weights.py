"""The weight unit (`drift.unit: weight`, weightlab.drift.weights) on constructed cases whose answer
is known: a planted top weight is selected per module, ΔW_ij from known LoRA factors, and the
analysis population's seeded subsample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightlab.drift.groups import (
    build_groups,
    group_from_json,
    matched_control,
    random_group,
    random_matched,
    set_difference,
    spread,
    top_fraction,
    validate,
)
from weightlab.drift.snip import unit_scores
from weightlab.drift.weights import (
    base_weight,
    flat_index,
    lora_weight_delta,
    population_ids,
    row_col,
    weight_drift,
    weight_population,
)
from weightlab.errors import InputError

Q, UP = "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"


def planted_scores(seed: int, plant: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Weight scores in [0, 1) with one weight per module planted at 10 (its row sums lower than
    another row's, so the row unit picks a different row)."""
    gen = torch.Generator().manual_seed(seed)
    scores = {Q: torch.rand(8, 10, generator=gen), UP: torch.rand(12, 10, generator=gen)}
    for name, (i, j) in plant.items():
        scores[name][i, j] = 10.0
        other = (i + 1) % scores[name].shape[0]
        scores[name][other] += 2.0  # a row of many moderately large weights: the top row
    return scores


def test_weight_unit_selects_the_planted_top_weight_of_each_module():
    safety = planted_scores(0, {Q: (3, 7), UP: (5, 2)})
    utility = planted_scores(1, {Q: (0, 0), UP: (5, 2)})  # UP's planted weight is also top for utility
    flat_safety, flat_utility = unit_scores(safety, "weight"), unit_scores(utility, "weight")
    assert {k: len(v) for k, v in flat_safety.items()} == {Q: 80, UP: 120}
    groups = build_groups(flat_safety, flat_utility, snip_top_k=0.01, set_diff_p=0.01, set_diff_q=0.01, utility_top_k=0.01, random_k=0.01)
    # floor(1% of 80 or 120 weights) = 0, at least 1: the one planted weight, as Wei et al.'s topk over W.flatten()
    assert groups["snip_top"][Q].tolist() == [3 * 10 + 7] and groups["snip_top"][UP].tolist() == [5 * 10 + 2]
    assert groups["utility"][Q].tolist() == [0] and groups["utility"][UP].tolist() == [52]
    # set difference: top safety weights that are not top utility weights
    assert groups["set_diff"][Q].tolist() == [37] and groups["set_diff"][UP].tolist() == []
    # the row unit scores rows: the row of many large weights, not the planted weight's row
    rows = build_groups(unit_scores(safety, "row"), unit_scores(utility, "row"), 0.1, 0.1, 0.1, 0.1, 0.1)
    assert rows["snip_top"][Q].tolist() == [4] and rows["snip_top"][UP].tolist() == [6]
    with pytest.raises(InputError, match="unit"):
        unit_scores(safety, "column")


def test_flat_indices_are_row_major_positions():
    rows, cols = np.array([0, 2, 5]), np.array([3, 0, 9])
    ids = flat_index(rows, cols, 10)
    assert ids.tolist() == [3, 20, 59]
    assert [r.tolist() for r in row_col(ids, 10)] == [rows.tolist(), cols.tolist()]
    assert torch.arange(60.0).reshape(6, 10).flatten()[torch.as_tensor(ids)].tolist() == [3.0, 20.0, 59.0]
    with pytest.raises(InputError):
        flat_index(np.array([0]), np.array([10]), 10)


def test_weight_drift_from_known_lora_factors():
    a = torch.tensor([[1.0, 2.0, 3.0]])  # r = 1, three inputs
    b = torch.tensor([[1.0], [0.0], [2.0]])  # three outputs
    base = torch.tensor([[1.0, -1.0, 4.0], [0.5, 0.0, 2.0], [0.0, 8.0, -3.0]])
    ids = flat_index(np.array([0, 2, 1, 2]), np.array([2, 1, 0, 0]), 3)
    # ΔW = 2·B·A = [[2, 4, 6], [0, 0, 0], [4, 8, 12]]
    assert lora_weight_delta(a, b, 2.0, ids).tolist() == [6.0, 8.0, 0.0, 4.0]
    drift = weight_drift(base, a, b, 2.0, ids)
    assert drift["l2"].tolist() == [6.0, 8.0, 0.0, 4.0]
    assert drift["norm"].tolist() == [4.0, 8.0, 0.5, 0.0]
    assert drift["relative"][:3].tolist() == [1.5, 1.0, 0.0] and np.isnan(drift["relative"][3])  # a zero weight: NaN, never 0
    assert set(drift) == {"l2", "relative", "norm"}  # no cosine for a scalar
    # against the start's factors: the change since then, relative to the effective weight then
    a0, b0 = torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([[1.0], [1.0], [1.0]])
    since = weight_drift(base, a, b, 2.0, ids, a0, b0)
    assert since["l2"].tolist() == [4.0, 6.0, 2.0, 2.0]  # |2·(BA − B0A0)| = |ΔW − 2|
    assert since["norm"].tolist() == [6.0, 10.0, 2.5, 2.0]  # |W + 2·B0A0|


def test_weight_drift_equals_the_full_product_on_a_random_module():
    gen = torch.Generator().manual_seed(3)
    a, b, base = torch.randn(4, 30, generator=gen), torch.randn(20, 4, generator=gen), torch.randn(20, 30, generator=gen)
    ids = np.random.default_rng(0).choice(600, size=50, replace=False)
    full = (0.5 * (b.double() @ a.double())).flatten().numpy()
    np.testing.assert_allclose(weight_drift(base, a, b, 0.5, ids)["l2"], np.abs(full[ids]), rtol=1e-12)
    with pytest.raises(InputError):
        weight_drift(base.T, a, b, 0.5, ids)
    with pytest.raises(InputError, match="outside"):
        weight_drift(base, a, b, 0.5, np.array([600]))


def test_population_ids_are_reproducible_and_hold_every_group_weight():
    sizes = {Q: 1000, UP: 40}
    groups = {"snip_top": {Q: np.array([5, 17, 900]), UP: np.array([0, 1])}, "set_diff": {Q: np.array([17, 18])},
              "random": {UP: np.arange(10, 20)}}
    first = population_ids(sizes, groups, sample=100, seed=7)
    assert first.keys() == sizes.keys()
    for module in sizes:
        members = np.unique(np.concatenate([g[module] for g in groups.values() if module in g]))
        assert np.isin(members, first[module]).all()
        assert len(np.unique(first[module])) == len(first[module]) and (np.diff(first[module]) > 0).all()
    assert len(first[Q]) == 4 + 100  # four group weights and the sample of others
    assert len(first[UP]) == 40  # fewer than 100 others left: every weight
    again = population_ids(sizes, groups, sample=100, seed=7)
    assert all(np.array_equal(first[m], again[m]) for m in sizes)
    assert not np.array_equal(population_ids(sizes, groups, sample=100, seed=8)[Q], first[Q])
    assert len(population_ids(sizes, groups, sample=0, seed=7)[Q]) == 4
    with pytest.raises(InputError, match="outside"):
        population_ids({Q: 10}, {"snip_top": {Q: np.array([10])}}, sample=1, seed=0)


def test_weight_population_has_the_tracker_form_with_group_masks():
    gen = torch.Generator().manual_seed(0)
    modules = {name: {"base": torch.randn(n_out, 6, generator=gen), "a": torch.randn(2, 6, generator=gen),
                      "b": torch.randn(n_out, 2, generator=gen), "scale": 2.0} for name, n_out in ((Q, 5), (UP, 4))}
    groups = {"snip_top": {Q: np.array([3, 29]), UP: np.array([7])}, "random_matched": {UP: np.array([2])}}
    pop = weight_population(modules, groups, sample=3, seed=0)
    assert pop["modules"] == [Q, UP]
    n_q = int((pop["module_index"] == 0).sum())
    assert n_q == 2 + 3 and len(pop["row"]) == n_q + 1 + 1 + 3
    in_top = pop["in:snip_top"]
    assert sorted(pop["row"][in_top & (pop["module_index"] == 0)].tolist()) == [3, 29]
    assert pop["row"][in_top & (pop["module_index"] == 1)].tolist() == [7]
    assert pop["row"][pop["in:random_matched"]].tolist() == [2]
    q = modules[Q]
    expected = weight_drift(q["base"], q["a"], q["b"], 2.0, pop["row"][:n_q])
    np.testing.assert_array_equal(pop["l2"][:n_q], expected["l2"])


def test_weight_tracker_equals_the_change_of_the_merged_weights():
    """After one LoRA step, each tracked weight's |ΔW_ij| is its change in the merged model, and the
    population holds every group weight plus the sample, with the groups' masks."""
    from test_drift import lora_step, tiny_llama

    from conftest import lora_settings
    from weightlab.drift.lora import wrap_lora
    from weightlab.drift.snip import module_units, projection_modules
    from weightlab.drift.weights import WeightDriftTracker

    model = tiny_llama()
    initial = {name: m.weight.detach().clone() for name, m in projection_modules(model).items()}
    sizes = module_units(model, "weight")
    q, up, down = "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj"
    assert sizes[q] == initial[q].numel()
    peft_model = wrap_lora(model, lora_settings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "up_proj")), seed=0)
    groups = {"snip_top": {q: np.array([0, 33, 70]), up: np.array([2, 300]), down: np.array([1])}, "random": {q: np.array([5, 33])}}
    tracker = WeightDriftTracker(peft_model, groups, sample=10, seed=0)
    assert tracker.excluded == {"snip_top": 1, "random": 0}  # down_proj carries no adapter
    assert np.all(tracker.measure()["snip_top"]["l2"] == 0)
    lora_step(peft_model)
    got = tracker.measure()
    assert set(got["snip_top"]) == {"l2", "relative", "norm"}
    merged = peft_model.merge_and_unload()
    expected = []
    for name in sorted(tracker.groups["snip_top"]):
        after = dict(merged.named_modules())[name].weight.detach().flatten()
        ids = torch.as_tensor(tracker.groups["snip_top"][name])
        expected.append((after[ids].double() - initial[name].flatten()[ids].double()).abs().numpy())
    np.testing.assert_allclose(got["snip_top"]["l2"], np.concatenate(expected), rtol=1e-4, atol=1e-9)
    assert np.all(got["snip_top"]["l2"] > 0)
    population = tracker.population()
    assert sorted(population["modules"]) == sorted(tracker.trained_modules)
    q_index = population["modules"].index(q)
    in_q = population["module_index"] == q_index
    assert int(in_q.sum()) == 4 + 10  # the group weights 0, 5, 33, 70 and the sample
    assert sorted(population["row"][in_q & population["in:snip_top"]].tolist()) == [0, 33, 70]
    assert sorted(population["row"][in_q & population["in:random"]].tolist()) == [5, 33]


def test_finetune_and_analysis_on_the_weight_unit_read_l2_without_cosine():
    """The weight unit through the fine-tuning (groups of flat ids from per-weight scores) and the
    analysis: the log and the population carry L2, relative and |W| (no cosine); the verdict reads
    L2, relative secondary; every statement names the unit's measures."""
    from test_drift import PAIRS, CharTokenizer, tiny_llama

    from conftest import default_settings, lora_settings, train_settings
    from weightlab.drift.analysis import analyse_run
    from weightlab.drift.lora import finetune_with_drift
    from weightlab.drift.settings import AnalysisSettings
    from weightlab.drift.snip import module_units

    model = tiny_llama()
    sizes = module_units(model, "weight")
    rng = np.random.default_rng(0)
    groups = build_groups({m: rng.gamma(2.0, size=n) for m, n in sizes.items()}, {m: rng.gamma(2.0, size=n) for m, n in sizes.items()},
                          snip_top_k=0.05, set_diff_p=0.05, set_diff_q=0.1, utility_top_k=0.05, random_k=0.05)
    result = finetune_with_drift(model, CharTokenizer(), PAIRS, groups, lora_settings(r=2, alpha=4, dropout=0.0),
                                 train_settings(learning_rate=0.01, batch_size=4, max_steps=2, max_length=64), drift_interval=1,
                                 seed=0, unit="weight", weight_sample=30)
    assert set(result.records[-1]["groups"]["snip_top"]) == {"l2", "relative", "norm"}
    assert result.records[-1]["groups"]["snip_top"]["l2"]["median"] > 0
    population = result.population
    assert "cosine" not in population and int(population["in:snip_top"].sum()) == sum(len(r) for r in groups["snip_top"].values())
    rate = {"rate": 0.5, "n": 10, "interval": [0.2, 0.8]}
    finetune = {"refusal_before": {"harmful": rate}, "refusal_after": {"harmful": rate}, "trained_modules": result.trained_modules,
                "excluded": result.excluded}
    analysis = AnalysisSettings.from_settings({"analysis": {**default_settings("drift", "analysis"), "n_boot": 50, "power_repeats": 2,
                                                            "power_n_boot": 20}})
    stats = analyse_run(population, result.records, finetune, None, analysis, seed=0, unit="weight")
    assert stats["verdict_measures"] == ["l2"] and set(stats["comparisons"]["snip_top"]) == {"l2", "relative"}
    assert set(stats["power"]["snip_top"]) == {"l2"} and set(stats["final_drift_median"]["snip_top"]) == {"l2", "relative"}
    statements = [c["statement"] for c in stats["criteria"] if c["id"].startswith(("h1_", "no_differential_drift_"))]
    assert statements and all("on L2 change" in s and "cosine" not in s for s in statements)


def test_weight_positions_and_factors_that_do_not_fit_are_refused():
    with pytest.raises(InputError, match="outside"):
        flat_index(np.array([-1]), np.array([0]), 3)
    a, b = torch.ones(1, 3), torch.ones(2, 1)
    with pytest.raises(InputError, match="outside a module of 2"):
        lora_weight_delta(a, b, 1.0, np.array([6]))  # row 2 of a 2 x 3 weight
    for base, a, b in ((torch.ones(3, 4), torch.ones(2, 4), torch.ones(5, 2)), (torch.ones(3, 4), torch.ones(2, 5), torch.ones(3, 2))):
        with pytest.raises(InputError, match="do not fit"):
            weight_drift(base, a, b, 1.0, np.array([0]))


def test_relative_weight_drift_of_small_weights_and_a_start_needs_both_factors():
    """|W| below 1: the relative change is still |ΔW| / |W|; a0 without b0 is no start (B0 = 0)."""
    base = torch.tensor([[0.5, -0.25], [0.1, 2.0]])
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5], [1.0]])  # ΔW = B·A = [[0.5, 1], [1, 2]]
    drift = weight_drift(base, a, b, 1.0, np.array([0, 1, 2, 3]))
    assert drift["relative"].tolist() == pytest.approx([1.0, 4.0, 10.0, 1.0])
    alone = weight_drift(base, a, b, 1.0, np.array([0, 1, 2, 3]), a0=torch.ones(1, 2))
    assert {k: v.tolist() for k, v in alone.items()} == {k: v.tolist() for k, v in drift.items()}


def test_population_ids_without_groups_and_of_an_almost_full_module():
    sizes = {Q: 10, UP: 6}
    assert {m: r.tolist() for m, r in population_ids(sizes, {}, sample=0, seed=0).items()} == {Q: [], UP: []}
    only = population_ids(sizes, {}, sample=4, seed=3)
    assert [len(r) for r in only.values()] == [4, 4] and all(r.dtype == np.int64 for r in only.values())
    # the documented stream: [seed, 13, the module's position]
    assert only[UP].tolist() == sorted(np.random.default_rng([3, 13, 1]).choice(np.arange(6), 4, replace=False).tolist())
    full = population_ids({Q: 10}, {"snip_top": {Q: np.arange(8)}}, sample=2, seed=0)
    assert full[Q].tolist() == list(range(10))  # the two weights in no group, whatever the draw
    for seed in range(10):
        ids = population_ids({Q: 10}, {"snip_top": {Q: np.arange(8)}}, sample=1, seed=seed)[Q]
        assert ids[:8].tolist() == list(range(8)) and ids[8] in (8, 9) and len(ids) == 9


def _modules_with_start(seed: int = 0) -> dict[str, dict]:
    gen = torch.Generator().manual_seed(seed)
    return {name: {"base": torch.randn(n_out, 6, generator=gen), "a": torch.randn(2, 6, generator=gen), "b": torch.randn(n_out, 2, generator=gen),
                   "a0": torch.randn(2, 6, generator=gen), "b0": torch.randn(n_out, 2, generator=gen), "scale": 2.0}
            for name, n_out in ((Q, 5), (UP, 4))}


def test_weight_population_measures_drift_since_the_start_factors():
    modules = _modules_with_start()
    groups = {"snip_top": {Q: np.array([3, 29]), UP: np.array([7])}}
    pop = weight_population(modules, groups, sample=3, seed=0)
    for index, name in enumerate((Q, UP)):
        m, here = modules[name], pop["module_index"] == index
        expected = weight_drift(m["base"], m["a"], m["b"], 2.0, pop["row"][here], m["a0"], m["b0"])
        for measure in ("l2", "relative", "norm"):
            np.testing.assert_array_equal(pop[measure][here], expected[measure])
    empty = weight_population({}, groups, sample=3, seed=0)  # no module: empty columns, boolean masks
    assert empty.keys() == pop.keys() and empty["modules"] == [] and empty["in:snip_top"].dtype == bool
    assert all(len(v) == 0 for v in empty.values())


def test_base_weight_is_out_by_in_whatever_the_layer_stores():
    from types import SimpleNamespace

    weight = torch.arange(6.0).reshape(2, 3)

    def layer(**flags):
        return SimpleNamespace(get_base_layer=lambda: SimpleNamespace(weight=weight), **flags)

    assert base_weight(layer()).shape == (2, 3) and base_weight(layer(fan_in_fan_out=False)).shape == (2, 3)
    assert torch.equal(base_weight(layer(fan_in_fan_out=True)), weight.T)


def test_weight_tracker_made_mid_training_measures_from_then_and_skips_empty_modules():
    """A tracker made after a LoRA step reads zero drift until the next step (the start's factors
    are not B0 = 0 then); a group whose first module (sorted) lists no weight still reads the rest;
    a group with one trained weight is enough, one with none is refused."""
    from test_drift import lora_step, tiny_llama

    from conftest import lora_settings
    from weightlab.drift.lora import wrap_lora
    from weightlab.drift.weights import WeightDriftTracker

    q0, q1 = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"
    peft_model = wrap_lora(tiny_llama(), lora_settings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj",)), seed=0)
    lora_step(peft_model)
    groups = {"snip_top": {q0: np.array([], dtype=np.int64), q1: np.array([4, 9])}, "random": {q1: np.array([9])}}
    tracker = WeightDriftTracker(peft_model, groups, sample=2)
    assert tracker.seed == 0
    got = tracker.measure()
    assert got["snip_top"]["l2"].tolist() == [0.0, 0.0] and got["random"]["l2"].tolist() == [0.0]
    lora_step(peft_model)
    moved = tracker.measure()
    assert len(moved["snip_top"]["l2"]) == 2 and np.all(moved["snip_top"]["l2"] > 0)
    assert moved["random"]["l2"].tolist() == moved["snip_top"]["l2"][1:].tolist()
    with pytest.raises(InputError, match="weight group 'random' has no weight"):
        WeightDriftTracker(peft_model, {"snip_top": {q1: np.array([1])}, "random": {"model.layers.0.mlp.up_proj": np.array([1])}}, sample=2)


# --- the groups of neurons or weights (weightlab.drift.groups) on constructed scores -------------

K, V = "model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.q_proj"


def assert_group(got: dict[str, np.ndarray], expected: dict[str, list[int]]) -> None:
    """A group equal to `expected`, module by module, with int64 row indices."""
    assert {m: r.tolist() for m, r in got.items()} == expected
    assert all(r.dtype == np.int64 for r in got.values())


def test_top_fraction_at_its_limits_and_ties_by_lower_row():
    scores = {Q: np.tile([1.0, 0.0], 15), UP: np.array([3.0, 1.0, 2.0])}
    assert_group(top_fraction(scores, 0.2), {Q: [0, 2, 4, 6, 8, 10], UP: [0]})  # fifteen tied at the top: the lowest rows
    assert_group(top_fraction(scores, 1.0), {Q: list(range(30)), UP: [0, 1, 2]})
    for bad in (0.0, 1.5):
        with pytest.raises(InputError, match="^the top fraction must"):
            top_fraction(scores, bad)


def test_set_difference_rows_are_int64_and_its_fractions_named():
    safety = {Q: np.array([5.0, 4, 3, 2, 1])}
    utility = {Q: np.array([0.0, 9, 0, 0, 0])}
    assert_group(set_difference(safety, utility, p=0.2, q=0.6), {Q: [0, 2]})
    assert_group(set_difference(safety, utility, p=1.0, q=1.0), {Q: []})
    with pytest.raises(InputError, match="^set_diff_q must"):
        set_difference(safety, utility, p=0.2, q=1.5)
    with pytest.raises(InputError, match="^set_diff_p must"):
        set_difference(safety, utility, p=1.5, q=0.2)


def test_random_group_draws_round_fraction_times_all_neurons_at_least_one():
    sizes = {Q: 4, UP: 6}
    for seed in range(20):
        group = random_group(sizes, 0.9, np.random.default_rng(seed))
        assert sum(len(r) for r in group.values()) == 9 and all(r.dtype == np.int64 for r in group.values())
        assert all(0 <= r.min() and r.max() < sizes[m] and len(np.unique(r)) == len(r) for m, r in group.items() if len(r))
    assert sum(len(r) for r in random_group(sizes, 0.01, np.random.default_rng(0)).values()) == 1
    assert_group(random_group(sizes, 1.0, np.random.default_rng(0)), {Q: [0, 1, 2, 3], UP: [0, 1, 2, 3, 4, 5]})
    with pytest.raises(InputError, match="^random_k must"):
        random_group(sizes, 0.0, np.random.default_rng(0))


def test_random_matched_edges_no_reference_a_missing_module_and_an_exact_fit():
    sizes = {Q: 4, UP: 3}
    assert_group(random_matched(sizes, [], np.random.default_rng(0)), {Q: [], UP: []})
    refs = [{Q: np.array([0, 1])}, {Q: np.array([1]), UP: np.array([0])}]  # UP absent from the first
    matched = random_matched(sizes, refs, np.random.default_rng(0))
    assert sorted(matched[Q].tolist()) == [2, 3] and len(matched[UP]) == 1 and matched[UP][0] in (1, 2)
    assert all(r.dtype == np.int64 for r in matched.values())
    with pytest.raises(InputError, match="fewer than the 3"):
        random_matched({Q: 4}, [{Q: np.array([0, 1, 2])}], np.random.default_rng(0))


def test_matched_control_of_a_module_the_control_lacks():
    control = {Q: np.array([5, 2, 7])}
    assert_group(matched_control(control, {Q: np.array([1, 3]), UP: np.array([], dtype=np.int64)}), {Q: [5, 2], UP: []})
    with pytest.raises(InputError, match="random_matched has 0 neurons in " + UP):
        matched_control(control, {UP: np.array([4])})


def test_build_groups_defaults_are_one_percent_and_seed_zero():
    rng = np.random.default_rng(0)
    safety = {Q: rng.random(200), UP: rng.random(300)}
    utility = {Q: rng.random(200), UP: rng.random(300)}
    default = build_groups(safety, utility)
    explicit = build_groups(safety, utility, snip_top_k=0.01, set_diff_p=0.1, set_diff_q=0.1, utility_top_k=0.01, random_k=0.01, seed=0)
    assert default.keys() == explicit.keys()
    for name in default:
        assert {m: r.tolist() for m, r in default[name].items()} == {m: r.tolist() for m, r in explicit[name].items()}, name
    assert [len(default["snip_top"][m]) for m in (Q, UP)] == [2, 3] and sum(len(r) for r in default["random"].values()) == 5
    # the documented streams: [seed, 11] for random, [seed, 12] for random_matched
    assert_group(default["random"], {m: r.tolist() for m, r in random_group({Q: 200, UP: 300}, 0.01, np.random.default_rng([0, 11])).items()})
    refs = [default["snip_top"], default["set_diff"]]
    assert_group(default["random_matched"], {m: r.tolist() for m, r in random_matched({Q: 200, UP: 300}, refs, np.random.default_rng([0, 12])).items()})


def test_validate_names_the_group_and_empty_rows_pass():
    validate({Q: np.array([], dtype=np.int64)}, {Q: 3})
    with pytest.raises(InputError, match="^group names module"):
        validate({UP: np.array([0])}, {Q: 3})


def test_spread_sums_modules_of_one_layer_and_one_type():
    sizes = {Q: 10, UP: 30, K: 10, V: 20}
    group = {Q: np.array([0, 1]), UP: np.array([3]), K: np.array([4, 5, 6]), V: np.array([7, 8, 9, 10])}
    assert spread(group, sizes) == {
        "count": 10,
        "by_layer": {"0": {"count": 6, "fraction": 6 / 50}, "1": {"count": 4, "fraction": 4 / 20}},
        "by_module_type": {"q_proj": {"count": 6, "fraction": 6 / 30}, "up_proj": {"count": 1, "fraction": 1 / 30},
                           "k_proj": {"count": 3, "fraction": 3 / 10}},
    }


def test_group_from_json_reads_int64_rows_even_for_an_empty_module():
    assert_group(group_from_json({"group": "snip_top", "neurons": {Q: [], UP: [2, 0]}}), {Q: [], UP: [2, 0]})
