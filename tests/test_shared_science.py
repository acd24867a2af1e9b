"""The shared science (stats, permutations, training) on cases with known answers, written where
mutation testing (benchmarks/mutation.sh shared) found the other tests blind."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import default_settings
from weightlab.config import settings_dataclass
from weightlab.errors import InputError
from weightlab.rebasin.permutations import PermutationSpec, apply_permutation, conv, dense, norm, weight_matching
from weightlab.stats import block_bootstrap_interval, bootstrap_interval, cohens_d, mean_interval, mean_of, median_of
from weightlab.vision.training import TrainConfig, lr_factor, train_classifier

# --- stats ----------------------------------------------------------------------------------------


def test_mean_and_median_skip_none_and_give_empty_when_nothing_is_left():
    assert mean_of([1.0, None, 4.0]) == pytest.approx(2.5)
    assert math.isnan(mean_of([None, None])) and mean_of([], empty=None) is None
    assert median_of([3.0, None, 1.0, 10.0]) == pytest.approx(3.0)
    assert math.isnan(median_of([None])) and median_of([], empty=0.0) == 0.0


def test_mean_interval_of_nothing_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "mean of empty slice" would be one
        result = mean_interval([None, None])
    assert result["n"] == 0 and math.isnan(result["mean"]) and result["ci95"] is None
    assert mean_interval([1.0, 3.0], confidence=0.9)["ci90"] == pytest.approx([2.0 - 6.313752 * 1.0, 2.0 + 6.313752 * 1.0], rel=1e-6)


def test_cohens_d_treats_none_as_missing_and_warns_about_nothing():
    assert cohens_d([1, 2, 3, None], [4, 5, None, 6]) == pytest.approx(-3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a one-value group must not reach numpy's ddof=1 variance
        assert math.isnan(cohens_d([1.0], [2.0, 3.0])) and math.isnan(cohens_d([1.0, 2.0], [3.0]))


# --- permutations ---------------------------------------------------------------------------------


def test_bootstrap_interval_of_a_mean_on_samples_with_a_known_answer():
    # {0, 0, 0, 1}: a resample's mean is k/4, k ~ Binomial(4, 1/4); P(k = 0) = 0.32 > 2.5% and
    # P(k <= 2) = 0.949 < 97.5% <= P(k <= 3) = 0.996, so the 95% percentile interval is [0, 0.75].
    assert bootstrap_interval([[0.0, 0.0, 0.0, 1.0]]) == [0.0, 0.75]
    # A large normal sample: about the t interval of the mean (half-width 1.96 σ / √n).
    values = np.random.default_rng(0).normal(5.0, 1.0, 400)
    low, high = bootstrap_interval([values])
    t = mean_interval(values)["ci95"]
    assert low == pytest.approx(t[0], abs=0.02) and high == pytest.approx(t[1], abs=0.02)
    # Two samples: the ratio of their means, every value of a sample equal -> the exact ratio.
    ratio = lambda a, b, axis=-1: np.mean(a, axis=axis) / np.mean(b, axis=axis)  # noqa: E731
    assert bootstrap_interval([[2.0, 2.0], [4.0, 4.0]], ratio) == [0.5, 0.5]
    assert bootstrap_interval([[1.0]]) is None and bootstrap_interval([[1.0, 2.0], [3.0]], ratio) is None
    assert bootstrap_interval([[0.0, 0.0], [0.0, 0.0]], ratio) is None  # 0/0: not finite
    sample = [values[:50]]
    assert bootstrap_interval(sample, seed=3) == bootstrap_interval(sample, seed=3) != bootstrap_interval(sample, seed=4)


def test_block_bootstrap_of_a_monotone_pair_gives_rho_one_at_both_ends():
    from scipy.stats import spearmanr

    x = np.arange(50.0)
    assert block_bootstrap_interval((x, 3 * x + 1), lambda a, b: spearmanr(a, b)[0]) == pytest.approx([1.0, 1.0])
    assert block_bootstrap_interval((x, -x), lambda a, b: spearmanr(a, b)[0]) == pytest.approx([-1.0, -1.0])


def test_block_bootstrap_with_single_points_is_the_iid_interval_of_a_mean():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.0, 900)
    low, high = block_bootstrap_interval((x,), np.mean, block=1, n_resamples=4000, seed=1)
    half = 1.959964 * x.std() / math.sqrt(x.size)
    assert low == pytest.approx(x.mean() - half, abs=0.1 * half) and high == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_block_bootstrap_widens_the_interval_of_an_autocorrelated_series():
    """AR(1) with phi = 0.9: the mean's standard error is sqrt((1 + phi) / (1 - phi)) = 4.4 times
    the iid one; blocks of 40 steps keep most of that dependence, single points none of it."""
    rng = np.random.default_rng(0)
    x = np.zeros(2000)
    for i in range(1, x.size):
        x[i] = 0.9 * x[i - 1] + rng.normal()
    iid = np.diff(block_bootstrap_interval((x,), np.mean, block=1, seed=2))[0]
    blocks = np.diff(block_bootstrap_interval((x,), np.mean, block=40, seed=2))[0]
    assert 3.0 < blocks / iid < 5.0


def test_block_bootstrap_default_block_and_its_limits():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=125), rng.normal(size=125)
    corr = lambda a, b: float(np.corrcoef(a, b)[0, 1])  # noqa: E731
    default = block_bootstrap_interval((x, y), corr, seed=4)
    assert default == block_bootstrap_interval((x, y), corr, block=5, seed=4)  # round(125 ** (1/3)) = 5
    assert default != block_bootstrap_interval((x, y), corr, block=4, seed=4)
    assert default != block_bootstrap_interval((x, y), corr, seed=5)
    assert block_bootstrap_interval((x, y[:-1]), corr) is None  # the samples must pair up
    assert block_bootstrap_interval((x[:2],), np.mean) is None  # fewer than three points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert block_bootstrap_interval((np.ones(30), x[:30]), corr) is None  # never finite
    first_ten_bad = lambda a: float("nan") if a[0] < 10 else float(a.mean())  # noqa: E731
    ids = np.arange(125.0)  # a resample starts with one of the first ten ids 8% of the time
    assert block_bootstrap_interval((ids,), first_ten_bad, block=1, seed=0) is not None
    assert block_bootstrap_interval((ids,), first_ten_bad, block=1, seed=0, min_finite=0.95) is None


def test_bootstrap_interval_is_scipys_percentile_bootstrap_with_its_defaults():
    """2,000 resamples, seed 0, each sample resampled on its own (not paired), percentile ends."""
    from scipy import stats

    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 1.0, 12), rng.normal(0.0, 2.0, 12)  # equal sizes: paired resampling would differ
    diff = lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis)  # noqa: E731
    for confidence in (0.95, 0.8):
        ci = stats.bootstrap((x, y), diff, n_resamples=2000, confidence_level=confidence, method="percentile", paired=False,
                             vectorized=True, rng=np.random.default_rng(0)).confidence_interval
        got = bootstrap_interval([x, y], diff) if confidence == 0.95 else bootstrap_interval([x, y], diff, confidence=confidence)
        assert got == [ci.low, ci.high]


def test_bootstrap_interval_of_constant_samples_is_the_value_even_where_bca_is_undefined():
    assert bootstrap_interval([[3.0, 3.0, 3.0]], method="BCa") == [3.0, 3.0]  # scipy's BCa alone gives NaN here


def test_bootstrap_interval_with_one_end_not_finite_is_none():
    log_mean = lambda a, axis=-1: np.log(np.mean(a, axis=axis))  # noqa: E731
    with np.errstate(divide="ignore"):  # resamples of zeros only: log 0 = -inf at the low end, a finite high end
        assert bootstrap_interval([[0.0, 0.0, 1.0]], log_mean) is None


def test_block_bootstrap_edges_of_its_input():
    assert block_bootstrap_interval([], np.mean) is None
    assert block_bootstrap_interval((np.array([1.0, 2.0, 4.0]),), np.mean) is not None  # three points are enough
    series = np.array([5.0, 1.0, 2.0, 3.0, 4.0, 0.0])
    step = lambda a: a[1] - a[0]  # noqa: E731 -- depends on the order within a block
    assert block_bootstrap_interval((series,), step, block=6) == [-4.0, -4.0]  # one block: the series itself


def test_block_bootstrap_draws_blocks_from_both_ends_of_the_series():
    """Single points, 6 per resample: a given point is in a resample with probability 1 - (5/6)^6 = 0.67."""
    first, last = np.array([9.0, 0, 0, 0, 0, 0]), np.array([0, 0, 0, 0, 0, 9.0])
    assert block_bootstrap_interval((first,), np.max, block=1)[1] == 9.0
    assert block_bootstrap_interval((last,), np.max, block=1)[1] == 9.0


def test_block_bootstrap_percentiles_and_finite_share_at_their_edges():
    counter = iter(range(10**6))
    order = lambda a: float(next(counter))  # noqa: E731 -- the k-th resample's value is k
    low, high = block_bootstrap_interval((np.arange(10.0),), order, n_resamples=2000, confidence=0.9)
    assert [low, high] == pytest.approx([np.percentile(np.arange(2000.0), 5), np.percentile(np.arange(2000.0), 95)], abs=1e-9)
    calls = iter(range(10**6))
    half_nan = lambda a: float("nan") if next(calls) < 5 else 1.0  # noqa: E731 -- exactly 5 of 10 finite
    assert block_bootstrap_interval((np.arange(10.0),), half_nan, n_resamples=10, min_finite=0.5) == [1.0, 1.0]
    x = np.random.default_rng(2).normal(size=40)
    assert block_bootstrap_interval((x,), np.mean) == block_bootstrap_interval((x,), np.mean, n_resamples=2000, seed=0)


def test_spec_builders_defaults():
    assert conv("c", "P", "Q") == {"c.weight": ("Q", "P", None, None)}
    assert conv("c", "P", "Q", bias=True)["c.bias"] == ("Q",)
    assert set(norm("n", "P")) == {"n.weight", "n.bias", "n.running_mean", "n.running_var", "n.num_batches_tracked"}
    assert norm("n", "P")["n.num_batches_tracked"] == () and set(norm("n", "P", running_stats=False)) == {"n.weight", "n.bias"}
    assert dense("d", "P", "Q") == {"d.weight": ("Q", "P"), "d.bias": ("Q",)}


def test_spec_check_names_missing_or_extra_entries_alone_and_wrong_ranks():
    spec = PermutationSpec(dense("l1", None, "P"))
    with pytest.raises(Exception, match=r"entries without a spec \['other'\]"):
        spec.check({"l1.weight": torch.zeros(3, 2), "l1.bias": torch.zeros(3), "other": torch.zeros(1)})
    with pytest.raises(Exception, match=r"absent from the model \['l1.bias'\]"):
        spec.check({"l1.weight": torch.zeros(3, 2)})
    with pytest.raises(Exception, match="spec for 'l1.weight' names 2 axes but the tensor has 3"):
        spec.check({"l1.weight": torch.zeros(3, 2, 1), "l1.bias": torch.zeros(3)})


def planted(spec: PermutationSpec, a: dict[str, torch.Tensor], perm: np.ndarray) -> dict[str, torch.Tensor]:
    return apply_permutation(spec, {"P": perm}, a)


def test_matching_recovers_a_permutation_first_seen_on_a_second_axis():
    """The first spec entry of P is its input axis (w_in: 5 x 3) and the next its output (w_out:
    3 x 7): P's size, 3, is read from the entry and axis that name it."""
    spec = PermutationSpec({"w_in": (None, "P"), "w_out": ("P", None)})
    rng = np.random.default_rng(0)
    a = {"w_in": torch.tensor(rng.normal(size=(5, 3))), "w_out": torch.tensor(rng.normal(size=(3, 7)))}
    perm = np.array([2, 0, 1])
    match = weight_matching(spec, a, planted(spec, a, perm))
    assert np.array_equal(perm[match.perms["P"]], np.arange(3))


def test_matching_sums_every_entry_and_skips_those_without_parameters():
    """w_out is constant, so it cannot tell units apart: only the sum with w_in finds the planted
    permutation. 'stat' (a running statistic, say) comes first and is not among A's parameters."""
    spec = PermutationSpec({"stat": ("P",), "w_in": ("P", None), "w_out": (None, "P")})
    rng = np.random.default_rng(1)
    a = {"stat": torch.tensor(rng.normal(size=4)), "w_in": torch.tensor(rng.normal(size=(4, 6))), "w_out": torch.ones(2, 4, dtype=torch.float64)}
    perm = np.array([3, 1, 0, 2])
    b = planted(spec, a, perm)
    match = weight_matching(spec, {k: v for k, v in a.items() if k != "stat"}, b)
    assert np.array_equal(perm[match.perms["P"]], np.arange(4))


def test_matching_stops_after_the_sweep_that_changes_nothing():
    spec = PermutationSpec({**dense("l1", None, "P"), **dense("l2", "P", None)})
    rng = np.random.default_rng(2)
    a = {"l1.weight": torch.tensor(rng.normal(size=(6, 3))), "l1.bias": torch.tensor(rng.normal(size=6)),
         "l2.weight": torch.tensor(rng.normal(size=(2, 6))), "l2.bias": torch.zeros(2, dtype=torch.float64)}
    b = planted(spec, a, np.array([3, 0, 5, 1, 4, 2]))
    match = weight_matching(spec, a, b)
    assert match.iterations == 2 and len(match.objective_history) == 2  # one sweep that moves units, one that confirms
    perfect = sum(float((v * v).sum()) for v in a.values())  # <W_a, W_a>: the planted match
    assert match.objective == pytest.approx(perfect) == pytest.approx(match.objective_history[-1])
    one = weight_matching(spec, a, b, max_iter=1)
    assert one.iterations == 1 and one.objective_history == [pytest.approx(perfect)] and one.objective == pytest.approx(perfect)
    same = weight_matching(spec, a, a)
    assert same.iterations == 1 and all(np.array_equal(p, np.arange(len(p))) for p in same.perms.values())


def test_matching_two_unrelated_networks_is_reproducible_and_seeded():
    from weightlab.rebasin.models import ConvNet

    torch.manual_seed(0)
    a, b = ConvNet(width=8, hidden=16), ConvNet(width=8, hidden=16)
    trainable = {n for n, _ in a.named_parameters()}
    params_a = {k: v for k, v in a.state_dict().items() if k in trainable}
    params_b = {k: v for k, v in b.state_dict().items() if k in trainable}
    spec = a.permutation_spec()
    first, again = weight_matching(spec, params_a, params_b), weight_matching(spec, params_a, params_b, seed=0)
    assert first.objective_history == again.objective_history
    assert all(np.array_equal(first.perms[p], again.perms[p]) for p in first.perms)
    other = weight_matching(spec, params_a, params_b, seed=1)  # another sweep order: another local optimum here
    assert other.objective_history != first.objective_history


def test_fraction_moved_per_permutation():
    from weightlab.rebasin.permutations import MatchResult

    result = MatchResult({"P": np.array([0, 2, 1, 3]), "Q": np.arange(3)}, iterations=1, objective=0.0, objective_history=[0.0])
    assert result.fraction_moved() == {"P": 0.5, "Q": 0.0}


# --- training -------------------------------------------------------------------------------------


class Linear12(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def tiny_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 1, 2, 2), dtype=np.uint8), rng.integers(0, 3, size=n).astype(np.int64)


def test_training_is_sgd_with_nesterov_momentum_and_weight_decay_by_hand():
    """Two epochs of two shuffled batches at a constant rate, by hand: g = grad + wd p; buf = g,
    then mu buf + g; p -= lr (g + mu buf) (Nesterov), plain gradient descent without momentum.
    The batches are drawn from the generator given; each epoch's record holds the mean loss and
    the accuracy of the batches as they were trained on."""
    from weightlab.vision.data import to_float_batch

    images, labels = tiny_images(8)
    x, y = to_float_batch(images).flatten(1), torch.from_numpy(labels)
    lr, wd = 0.1, 0.01
    for momentum in (0.9, 0.0):
        torch.manual_seed(0)
        model = Linear12()
        expected = {k: v.clone() for k, v in model.state_dict().items()}
        buffers: dict[str, torch.Tensor] = {}
        order = torch.Generator().manual_seed(3)
        records = []
        for _ in range(2):
            loss_sum, correct = 0.0, 0
            for idx in torch.split(torch.randperm(8, generator=order), 4):
                params = {k: v.clone().requires_grad_() for k, v in expected.items()}
                logits = x[idx] @ params["fc.weight"].T + params["fc.bias"]
                loss = nn.functional.cross_entropy(logits, y[idx])
                grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(1) == y[idx]).sum())
                for k in expected:
                    g = grads[k] + wd * expected[k]
                    buffers[k] = g.clone() if k not in buffers else momentum * buffers[k] + g
                    expected[k] = expected[k] - lr * (g + momentum * buffers[k] if momentum > 0 else g)
            with torch.no_grad():  # the evaluation set after the epoch: all 8, in eval mode
                logits = x @ expected["fc.weight"].T + expected["fc.bias"]
                records.append((loss_sum / 8, correct / 8, nn.functional.cross_entropy(logits, y).item(), float((logits.argmax(1) == y).float().mean())))
        config = TrainConfig(epochs=2, batch_size=4, lr=lr, momentum=momentum, weight_decay=wd, schedule="constant", warmup=0.0)
        history = train_classifier(model, images, labels, config, torch.device("cpu"), torch.Generator().manual_seed(3),
                                   eval_sets={"val": (images, labels)})
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6), (momentum, k)
        assert [(h["train_loss"], h["train_accuracy"]) for h in history] == [(pytest.approx(r[0]), r[1]) for r in records]
        assert [(h["val_loss"], h["val_accuracy"]) for h in history] == [(pytest.approx(r[2], rel=1e-5), r[3]) for r in records]
        assert all(0 <= h["seconds"] < 600 for h in history)  # the epoch's duration
        assert [h["lr"] for h in history] == [lr, lr]


@pytest.mark.parametrize("study", ["rebasin", "repair"])
def test_train_config_is_the_train_block_of_the_config_and_names_a_missing_key(study):
    block = default_settings(study, "train")
    assert dataclasses.asdict(settings_dataclass(TrainConfig, block, f"{study}.train")) == block
    with pytest.raises(InputError, match=rf"^{study}\.train: missing keys \['warmup'\], unknown keys \['warmup_steps'\]"):
        settings_dataclass(TrainConfig, {**{k: v for k, v in block.items() if k != "warmup"}, "warmup_steps": 1}, f"{study}.train")


def test_the_schedule_counts_a_short_last_batch_as_a_step():
    """10 examples in batches of 4: 3 steps per epoch, 6 in all; the triangle peaks at step
    int(0.5 * 6) = 3, the end of epoch 1, and reaches 0 at step 6."""
    images, labels = tiny_images(10)
    torch.manual_seed(0)
    config = TrainConfig(epochs=2, batch_size=4, lr=0.2, momentum=0.0, weight_decay=0.0, schedule="triangle", warmup=0.5)
    history = train_classifier(Linear12(), images, labels, config, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert lr_factor(3, 6, "triangle", 0.5) == 1.0
    assert [h["lr"] for h in history] == pytest.approx([0.2, 0.0])
    assert [h["epoch"] for h in history] == [1, 2]


def test_lr_factor_at_known_steps():
    assert lr_factor(0, 100, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(25, 100, "cosine", 0.0) == pytest.approx(0.5 * (1 + np.cos(np.pi / 4)))
    assert lr_factor(1, 1, "cosine", 0.0) == pytest.approx(0.0)  # one step in all: down to 0 at its end
    assert lr_factor(10, 100, "triangle", 0.2) == pytest.approx(0.5)  # half-way up to the peak at step 20
    assert lr_factor(60, 100, "triangle", 0.2) == pytest.approx(0.5)  # half-way down from 20 to 100
    assert lr_factor(1, 10, "triangle", 0.1) == pytest.approx(1.0)  # the peak at step 1
    assert lr_factor(1, 2, "triangle", 0.5) == pytest.approx(1.0)  # peak 1 of 2: decay over one step
    assert lr_factor(7, 10, "constant", 0.2) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, 10, "linear", 0.2)


def test_batch_indices_in_order_or_shuffled_by_the_generator():
    from weightlab.batches import batch_indices

    assert [b.tolist() for b in batch_indices(5, 2)] == [[0, 1], [2, 3], [4]]
    shuffled = [b.tolist() for b in batch_indices(5, 2, torch.Generator().manual_seed(4))]
    expected = torch.randperm(5, generator=torch.Generator().manual_seed(4))
    assert shuffled == [expected[:2].tolist(), expected[2:4].tolist(), expected[4:].tolist()]


def test_batch_indices_by_steps_cut_full_batches_from_seeded_epochs():
    from weightlab.batches import batch_indices

    steps = [b.tolist() for b in batch_indices(5, 2, torch.Generator().manual_seed(4), num_steps=4)]
    g = torch.Generator().manual_seed(4)
    epochs = torch.cat([torch.randperm(5, generator=g), torch.randperm(5, generator=g)])  # 8 needed: two epochs of 5
    assert steps == epochs[:8].view(4, 2).tolist()
    assert sorted(steps[0] + steps[1] + [steps[2][0]]) == [0, 1, 2, 3, 4]  # the first epoch: every example once
    with pytest.raises(ValueError, match="pass a generator"):
        list(batch_indices(5, 2, None, num_steps=4))
