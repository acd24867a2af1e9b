"""Experiment A (constraint and clamps): the task's data, the clamps, per-head freezing and the run,
each on a case whose answer is known."""

import dataclasses
import math

import pytest
import torch

from conftest import default_settings
from weightlab.errors import InputError
from weightlab.separability import constraint as exp_a
from weightlab.separability.auditlog import validate_audit_log, without_timestamps
from weightlab.separability.observables import a_activation, sigma_sq


def _exp_a_config(settings):
    """Experiment A's settings as the rule builds them: config.yaml's block with the test's changes."""
    return exp_a.ConstraintConfig.from_settings({**default_settings("separability", "exp_a"), **settings})

TINY = dict(vocab_size=64, seq_len=16, d_model=32, n_heads=4, d_head=8, d_mlp=32, n_train=128, n_heldout=64,
            batch_size=32, lr=1e-2, epochs=2, frozen_heads=[1, 2, 3], calibration_batches=2, probe_size=8,
            log_dense_every=2, log_sparse_every=4, log_dense_until=4, n_layers=2, frozen_layers=[0, 1],
            clamp_hook="ln_final.hook_out", g_window=4)


@pytest.fixture(scope="module")
def data() -> exp_a.InterleavedData:
    return exp_a.interleaved_sequences(500, 32, 4096, torch.Generator().manual_seed(0))


# --- the task -----------------------------------------------------------------------------------


def test_streams_are_interleaved_repeating_patterns_of_period_2_to_7(data):
    tokens, periods = data.tokens, data.periods
    assert tokens.shape == (500, 33) and int(tokens.min()) >= 0 and int(tokens.max()) < 4096
    assert set(periods.flatten().tolist()) == set(range(2, 8))
    for row, (p_a, p_b) in zip(tokens, periods.tolist()):
        a, b = row[0::2], row[1::2]
        assert torch.equal(a[p_a:], a[:-p_a]) and torch.equal(b[p_b:], b[:-p_b])  # each stream repeats its pattern
    # with 4096 tokens the patterns' tokens are almost always distinct: the period is the smallest shift
    distinct = [len(set(row[0::2][:p].tolist())) == p for row, p in zip(tokens, periods[:, 0].tolist())]
    assert sum(distinct) > 0.95 * len(distinct)
    again = exp_a.interleaved_sequences(500, 32, 4096, torch.Generator().manual_seed(0))
    assert torch.equal(again.tokens, tokens)


def test_perfect_predictor_scores_one_on_the_last_position_and_every_predictable_target(data):
    oracle = exp_a.oracle_predictions(data)
    mask = exp_a.predictable_targets(data.periods, 32)
    assert bool(mask[:, -1].all())  # the scored position is always predictable
    assert bool((oracle[mask] == data.targets[mask]).all())
    assert exp_a.oracle_accuracy(data) == 1.0
    logits = torch.nn.functional.one_hot(oracle[:, -2:], 4096).float()  # the oracle as a model's last two positions
    assert exp_a.last_position_accuracy(logits, data.targets[:, -2:]) == 1.0
    # the first period of each stream is new: (p_A − 1) + p_B targets per sequence cannot be predicted
    # (stream A's first token is an input, never a target)
    assert torch.equal((~mask).sum(1), data.periods[:, 0] - 1 + data.periods[:, 1])


def test_config_rejects_settings_the_task_cannot_run_with():
    with pytest.raises(InputError, match="unknown keys"):
        _exp_a_config({"vocab": 10})
    with pytest.raises(InputError, match="too short"):
        _exp_a_config({"seq_len": 12})
    with pytest.raises(InputError, match="at least one free"):
        _exp_a_config({"frozen_heads": [0, 1, 2, 3]})


def test_lr_factor_warms_up_linearly_then_follows_the_schedule():
    assert [exp_a.lr_factor(t, 100, "constant", 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert exp_a.lr_factor(0, 100, "cosine") == 1.0
    assert exp_a.lr_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert exp_a.lr_factor(99, 100, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert exp_a.lr_factor(1, 100, "cosine", 4) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.01)))
    with pytest.raises(InputError, match="warmup_steps"):
        _exp_a_config({"warmup_steps": -1})


# --- clamps -------------------------------------------------------------------------------------


def _resid() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(4, 6, 16) * 3.0 + torch.linspace(-2, 5, 16)  # a mean shift plus spread


def test_naive_clamp_sets_the_mean_token_norm_and_so_fixes_amplitude_and_variance_together():
    resid = _resid()
    out = exp_a.naive_clamp(resid, 7.0)
    assert a_activation(out) == pytest.approx(7.0, rel=1e-6)
    factor = 7.0 / a_activation(resid)
    assert torch.allclose(out, resid * factor)  # one factor for everything
    assert sigma_sq(out) == pytest.approx(sigma_sq(resid) * factor**2, rel=1e-5)
    # scaling the input, or growing its mean shift, cannot raise what passes the clamp
    assert torch.allclose(exp_a.naive_clamp(10 * resid, 7.0), out, atol=1e-5)
    assert a_activation(exp_a.naive_clamp(resid + 50.0, 7.0)) == pytest.approx(7.0, rel=1e-6)


def test_mean_preserving_clamp_keeps_the_mean_vector_and_sets_the_std():
    resid = _resid()
    out = exp_a.mean_preserving_clamp(resid, 0.5)
    mean_in, mean_out = resid.reshape(-1, 16).mean(0), out.reshape(-1, 16).mean(0)
    assert torch.allclose(mean_out, mean_in, atol=1e-5)
    assert float(exp_a.centred_std(out)) == pytest.approx(0.5, rel=1e-5)
    # a mean shift passes the clamp unchanged; a larger spread does not
    shift = torch.linspace(0, 30, 16)
    assert torch.allclose(exp_a.mean_preserving_clamp(resid + shift, 0.5), out + shift, atol=1e-4)
    centred = resid - mean_in
    assert torch.allclose(exp_a.mean_preserving_clamp(mean_in + 4 * centred, 0.5), out, atol=1e-4)


def test_clamps_are_named_hooks_on_the_residual_stream_of_the_model():
    cfg = _exp_a_config(TINY)
    model = exp_a.build_model(cfg, 0)
    tokens = exp_a.interleaved_sequences(8, 16, 64, torch.Generator().manual_seed(1)).inputs
    hook = "blocks.0.hook_resid_post"
    for clamp, measure, target in ((exp_a.Clamp("naive", hook, 3.0), exp_a.mean_token_norm, 3.0),
                                   (exp_a.Clamp("mean_preserving", hook, 2.0), exp_a.centred_std, 2.0)):
        seen: dict[str, torch.Tensor] = {}
        logits = model.run_with_hooks(tokens, fwd_hooks=[clamp.fwd_hook(), (hook, lambda x, hook, seen=seen: seen.setdefault("x", x))])
        assert float(measure(seen["x"].detach())) == pytest.approx(target, rel=1e-5)
        assert logits.shape == (8, 16, 64)
    # the variance clamp changes what the model computes; the hook is gone after the call
    plain = model(tokens)
    clamped = model.run_with_hooks(tokens, fwd_hooks=[exp_a.Clamp("mean_preserving", hook, 5.0).fwd_hook()])
    assert not torch.allclose(plain, clamped, atol=1e-3)
    assert torch.equal(model(tokens), plain)


def test_naive_clamp_before_the_final_layernorm_leaves_the_logits_unchanged():
    """A known consequence of where the clamp sits: the toy model's final LayerNorm divides each token
    by its own scale, so one factor for the whole last residual (the naive clamp) changes the logits
    only through LayerNorm's epsilon, while the variance clamp does change them."""
    cfg = _exp_a_config(TINY)
    model = exp_a.build_model(cfg, 0)
    tokens = exp_a.interleaved_sequences(8, 16, 64, torch.Generator().manual_seed(1)).inputs
    plain = model(tokens)
    hook = "blocks.1.hook_resid_post"
    norm = float(model.run_with_cache(tokens, names_filter=hook)[1][hook].norm(dim=-1).mean())

    def change(clamp: exp_a.Clamp) -> float:
        with torch.no_grad():
            return float((model.run_with_hooks(tokens, fwd_hooks=[clamp.fwd_hook()]) - plain).abs().max() / plain.abs().max())

    naive = max(change(exp_a.Clamp("naive", hook, factor * norm)) for factor in (0.5, 3.0))
    std = float(exp_a.centred_std(model.run_with_cache(tokens, names_filter=hook)[1][hook]))
    variance = min(change(exp_a.Clamp("mean_preserving", hook, factor * std)) for factor in (0.5, 3.0))
    assert naive < 1e-3 and variance > 100 * naive


def test_calibration_is_the_clamps_statistics_of_the_unclamped_model():
    cfg = _exp_a_config(TINY)
    model = exp_a.build_model(cfg, 0)
    tokens = exp_a.interleaved_sequences(64, 16, 64, torch.Generator().manual_seed(1)).inputs
    calibration = exp_a.calibrate_clamps(model, tokens, "blocks.0.hook_resid_post", batch_size=32, max_batches=2)
    _, cache = model.run_with_cache(tokens[:32], names_filter="blocks.0.hook_resid_post")
    _, cache2 = model.run_with_cache(tokens[32:], names_filter="blocks.0.hook_resid_post")
    resids = [cache["blocks.0.hook_resid_post"], cache2["blocks.0.hook_resid_post"]]
    assert calibration["batches"] == 2
    assert calibration["target_norm"] == pytest.approx(sum(a_activation(r) for r in resids) / 2, rel=1e-5)
    assert calibration["healthy_std"] == pytest.approx(sum(float(exp_a.centred_std(r)) for r in resids) / 2, rel=1e-5)
    with pytest.raises(InputError, match="hook point"):
        exp_a.calibrate_clamps(model, tokens, "blocks.0.hook_nothing", 32, 1)


# --- per-head freezing --------------------------------------------------------------------------


@pytest.mark.parametrize("make_optimiser", [
    lambda params: torch.optim.Adam(params, lr=1e-2),
    lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.5),  # decay alone would move zero-gradient slices
    lambda params: torch.optim.SGD(params, lr=1e-1, momentum=0.9, weight_decay=0.1),
], ids=["adam", "adamw", "sgd_momentum"])
def test_head_freeze_leaves_exactly_the_frozen_slices_bit_identical(make_optimiser):
    cfg = _exp_a_config(TINY)
    model = exp_a.build_model(cfg, 0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    freeze = exp_a.HeadFreeze(model, [1, 2, 3])
    optimiser = make_optimiser(model.parameters())
    data = exp_a.interleaved_sequences(32, 16, 64, torch.Generator().manual_seed(2))
    for _ in range(5):
        logits = model(data.inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), data.targets.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        frozen_grads = [float(p.grad[1:].abs().max()) for p in freeze.params.values()]
        optimiser.step()
        freeze.restore()
    assert frozen_grads == [0.0] * len(frozen_grads)  # the gradient never reaches the frozen slices
    state = model.state_dict()
    for name in exp_a.HEAD_PARAMS:
        key = f"blocks.0.attn.{name}"
        assert torch.equal(state[key][1:], initial[key][1:]), key  # heads 1-3 untouched, bit for bit
        assert not torch.equal(state[key][0], initial[key][0]) or name.startswith("b_"), key  # head 0 trained
    assert not torch.equal(state["blocks.0.attn.b_V"][0], initial["blocks.0.attn.b_V"][0])
    assert not torch.equal(state["blocks.0.attn.b_O"], initial["blocks.0.attn.b_O"])  # shared by all heads: trains
    report = freeze.report()
    assert report["frozen_slices_identical"] is True and report["max_abs_change_frozen"] == 0.0
    assert report["max_abs_change_free"] > 0
    freeze.remove()


def test_adam_keeps_zero_moments_for_frozen_slices_so_its_step_there_is_exactly_zero():
    cfg = _exp_a_config(TINY)
    model = exp_a.build_model(cfg, 0)
    freeze = exp_a.HeadFreeze(model, [1, 2, 3])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = exp_a.interleaved_sequences(32, 16, 64, torch.Generator().manual_seed(3))
    before = {k: v.clone() for k, v in freeze.params.items()}
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(data.inputs).reshape(-1, 64), data.targets.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()  # no restore: the gradient mask alone
    for name, param in freeze.params.items():
        state = optimiser.state[param]
        assert float(state["exp_avg"][1:].abs().max()) == 0.0 and float(state["exp_avg_sq"][1:].abs().max()) == 0.0
        assert torch.equal(param[1:], before[name][1:])


# --- one run of each condition ------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs() -> dict[str, exp_a.ConstraintRun]:
    cfg = _exp_a_config(TINY)
    out = {"control": exp_a.run_condition("control", cfg, 7, settings=TINY)}
    calibration = exp_a.calibration_from_control(out["control"].document, 7, cfg.clamp_hook)
    for condition in ("constraint", "naive_clamp", "mean_preserving_clamp"):
        out[condition] = exp_a.run_condition(condition, cfg, 7, settings=TINY, calibration=calibration)
    return out


def test_every_condition_logs_the_observables_and_a_valid_audit_log(runs):
    for condition, run in runs.items():
        doc = run.document
        validate_audit_log(doc)
        assert doc["metadata"]["experiment"] == f"exp_a_{condition}" and doc["metadata"]["seed"] == 7
        steps = [m["step"] for m in doc["metrics"]]
        assert steps[0] == 0 and steps[-1] == doc["summary"]["total_steps"] == 2 * (128 // 32)
        for record in doc["metrics"]:
            assert set(exp_a.metric_keys(condition)) <= set(record)
        for record in doc["metrics"]:
            assert set(exp_a.metric_keys(condition, 2, 4)) <= set(record)
        assert doc["metrics"][0]["G"] is None and 0.0 <= doc["metrics"][-1]["G"] <= 1.0
        assert 0.0 <= doc["metrics"][-1]["G_frozen"] <= 1.0
        assert set(doc["checkpoints"]) == {"0", str(doc["summary"]["total_steps"])}
        ceiling = doc["summary"]["fixed_offset_ceiling"]
        assert 0 < ceiling["accuracy"] < 1 and ceiling["offset"] % 2 == 0
    # same seed, same initial weights in every condition
    assert len({run.document["checkpoints"]["0"] for run in runs.values()}) == 1


def test_constrained_runs_keep_the_frozen_heads_at_initialisation(runs):
    cfg = _exp_a_config(TINY)
    initial = exp_a.build_model(cfg, 7).state_dict()
    for condition in exp_a.CONSTRAINED:
        summary, state = runs[condition].document["summary"], runs[condition].model.state_dict()
        assert summary["frozen_heads"] == [1, 2, 3] and summary["free_heads"] == [0] and summary["frozen_layers"] == [0, 1]
        assert summary["frozen_units"] == ["L0H1", "L0H2", "L0H3", "L1H1", "L1H2", "L1H3"]
        assert summary["frozen_slices_identical"] is True and summary["max_abs_change_frozen"] == 0.0
        assert summary["max_abs_change_free"] > 0
        for name in exp_a.HEAD_PARAMS:
            for layer in (0, 1):
                assert torch.equal(state[f"blocks.{layer}.attn.{name}"][1:], initial[f"blocks.{layer}.attn.{name}"][1:])
    control = runs["control"].document["summary"]
    assert control["frozen_heads"] == [] and control["frozen_slices_identical"] is None
    assert not torch.equal(runs["control"].model.state_dict()["blocks.0.attn.W_Q"][1:], initial["blocks.0.attn.W_Q"][1:])


def test_clamps_are_calibrated_on_the_control_and_hold_during_the_run(runs):
    calibration = runs["control"].document["summary"]["calibration"]
    assert calibration["hook"] == "ln_final.hook_out" and calibration["target_norm"] > 0
    naive = runs["naive_clamp"].document
    assert naive["summary"]["clamp"] == {"kind": "naive", "hook": calibration["hook"], "target_norm": calibration["target_norm"]}
    for record in naive["metrics"]:  # what leaves the clamp has the control's norm at every log
        assert record["A_site"] == pytest.approx(calibration["target_norm"], rel=1e-5)
    # one scale factor per training step, summarised; the logged one is the last step's
    for condition in exp_a.CLAMP_KINDS:
        summary = runs[condition].document["summary"]
        assert len(summary["clamp_factors"]) == summary["total_steps"]
        assert summary["clamp_effect"]["n_steps"] == summary["total_steps"]
        assert runs[condition].document["metrics"][-1]["clamp_factor"] == summary["clamp_factors"][-1]
        assert summary["clamp_effect"]["acts"] == (summary["clamp_effect"]["median_abs_log"] > math.log1p(0.05))
    mean_preserving = runs["mean_preserving_clamp"].document
    n_tokens = TINY["probe_size"] * TINY["seq_len"] * TINY["d_model"]
    variance = calibration["healthy_std"] ** 2 * (n_tokens - 1) / n_tokens  # std uses n − 1, sigma_sq uses n
    for record in mean_preserving["metrics"]:
        assert record["sigma_sq_site"] == pytest.approx(variance, rel=1e-4)
    assert "calibration" not in naive["summary"] and runs["constraint"].document["summary"]["clamp"] is None
    assert runs["constraint"].document["summary"]["clamp_factors"] is None


def test_clamp_conditions_need_the_control_of_the_same_seed(runs):
    cfg = _exp_a_config(TINY)
    with pytest.raises(InputError, match="control"):
        exp_a.run_condition("naive_clamp", cfg, 7)
    control = runs["control"].document
    with pytest.raises(InputError, match="seed"):
        exp_a.calibration_from_control(control, 8, cfg.clamp_hook)
    with pytest.raises(InputError, match="clamp_hook"):
        exp_a.calibration_from_control(control, 7, "blocks.0.hook_resid_mid")
    broken = {**control, "summary": {**control["summary"], "calibration": {"hook": cfg.clamp_hook, "target_norm": math.nan,
                                                                          "healthy_std": 1.0}}}
    with pytest.raises(InputError, match="positive"):
        exp_a.calibration_from_control(broken, 7, cfg.clamp_hook)


def test_saved_checkpoint_rebuilds_the_logged_final_state(runs, tmp_path):
    from weightlab.checkpoints import load_checkpoint, save_checkpoint
    from weightlab.separability.auditlog import state_sha256
    from weightlab.separability.toy import ARCHITECTURES

    run = runs["constraint"]
    cfg = _exp_a_config(TINY)
    save_checkpoint(tmp_path / "a.pt", run.model, "toy_transformer", cfg.model_config().as_dict(), {"condition": "constraint"})
    model, payload = load_checkpoint(tmp_path / "a.pt", ARCHITECTURES)
    final = str(run.document["summary"]["total_steps"])
    assert "sha256:" + state_sha256(model.state_dict()) == run.document["checkpoints"][final]
    tokens = exp_a.interleaved_sequences(4, 16, 64, torch.Generator().manual_seed(5)).inputs
    assert torch.equal(model(tokens), run.model(tokens))


def test_runs_are_deterministic_for_a_seed(runs):
    cfg = _exp_a_config(TINY)
    again = exp_a.run_condition("constraint", cfg, 7, settings=TINY)
    assert again.document["checkpoints"] == runs["constraint"].document["checkpoints"]
    assert without_timestamps(again.document["metrics"]) == without_timestamps(runs["constraint"].document["metrics"])


# --- settings, model and the pieces of a run, on cases with known answers ----------------------------


def test_config_accepts_its_boundaries_and_refuses_what_lies_beyond_them():
    """The longest pattern (7) twice is the shortest sequence; a set may be exactly one batch; heads
    0..n_heads − 1 and layers 0..n_layers − 1 are the valid names; values become tuples of ints."""
    cfg = _exp_a_config({**TINY, "seq_len": 14, "n_train": 32, "n_heldout": 32, "frozen_heads": ["0", 3],
                         "n_layers": 1, "frozen_layers": [0]})
    assert (cfg.seq_len, cfg.n_train, cfg.n_heldout, cfg.n_layers) == (14, 32, 32, 1)
    assert cfg.frozen_heads == (0, 3) and cfg.frozen_layers == (0,)  # tuples of ints, as HeadFreeze and the log read them
    assert _exp_a_config({**TINY, "frozen_heads": [0]}).frozen_heads == (0,)
    for changes, message in (({"n_heldout": 31}, "n_heldout"), ({"n_train": 31}, "n_train"),
                             ({"frozen_heads": [4]}, "frozen_heads"), ({"frozen_heads": [-1, 1]}, "frozen_heads"),
                             ({"frozen_layers": []}, "frozen_layers"), ({"frozen_layers": [2]}, "frozen_layers"),
                             ({"n_layers": 0, "frozen_layers": [0]}, "frozen_layers")):
        with pytest.raises(InputError, match=message):
            _exp_a_config({**TINY, **changes})
    with pytest.raises(InputError, match=r"^separability\.exp_a: .*unknown keys \['vocab'\]"):
        _exp_a_config({"vocab": 10})  # the error names the config block


def test_the_model_has_the_configured_architecture():
    """Sizes away from ToyConfig's defaults, so a size not passed on would show."""
    cfg = _exp_a_config({**TINY, "vocab_size": 24, "d_model": 20, "n_heads": 2, "d_head": 6, "d_mlp": 12, "frozen_heads": [1]})
    model = exp_a.build_model(cfg, 0)
    state = model.state_dict()
    assert tuple(state["embed.W_E"].shape) == (24, 20) and tuple(state["pos_embed.W_pos"].shape) == (16, 20)
    assert len(model.blocks) == 2
    for block in model.blocks:
        assert tuple(block.attn.W_Q.shape) == (2, 20, 6) and tuple(block.attn.W_V.shape) == (2, 20, 6)
        assert tuple(block.mlp.W_in.shape) == (20, 12)
    assert cfg.model_config().normalization == "LN"
    assert torch.equal(exp_a.build_model(cfg, 0).embed.W_E, model.embed.W_E)  # the seed alone sets the weights
    assert not torch.equal(exp_a.build_model(cfg, 1).embed.W_E, model.embed.W_E)


def test_forward_applies_the_given_hooks_and_make_optimiser_uses_the_configured_rate():
    cfg = _exp_a_config({**TINY, "lr": 0.037})
    model = exp_a.build_model(cfg, 0)
    tokens = exp_a.interleaved_sequences(8, 16, 64, torch.Generator().manual_seed(1)).inputs
    clamp = exp_a.Clamp("mean_preserving", "blocks.0.hook_resid_post", 5.0)
    with torch.no_grad():
        assert torch.equal(exp_a.forward(model, tokens), model(tokens))
        assert torch.equal(exp_a.forward(model, tokens, [clamp.fwd_hook()]),
                           model.run_with_hooks(tokens, fwd_hooks=[clamp.fwd_hook()]))
        assert not torch.allclose(exp_a.forward(model, tokens, [clamp.fwd_hook()]), model(tokens), atol=1e-3)
    optimiser = exp_a.make_optimiser(cfg, model)
    assert isinstance(optimiser, torch.optim.Adam)
    group = optimiser.param_groups[0]
    assert group["lr"] == 0.037 and group["weight_decay"] == 0 and group["betas"] == (0.9, 0.999)


def test_amplitude_params_of_planted_weights():
    cfg = _exp_a_config({**TINY, "d_model": 16, "n_heads": 2, "d_head": 8, "frozen_heads": [1]})
    model = exp_a.build_model(cfg, 0)
    with torch.no_grad():
        model.blocks[0].attn.W_V.fill_(1.0)  # 2 heads x 16 x 8 = 256 entries of 1
        model.blocks[1].attn.W_V.fill_(2.0)  # 256 entries of 2
        model.blocks[1].attn.W_V[1] = 0.0  # head 1 of layer 1 set to 0: 128 entries of 2 left
        model.ln_final.w.fill_(0.5)
        model.ln_final.w[:4] = 2.5  # mean (4 * 2.5 + 12 * 0.5) / 16 = 1.0
    assert exp_a.amplitude_params(model, [0]) == pytest.approx(
        {"A_param": math.sqrt(256 + 128 * 4), "A_param_free": math.sqrt(128 + 128 * 4), "A_learned": 1.0})


def test_metric_keys_name_every_logged_key_of_a_condition():
    common = ["psi_accuracy", "heldout_loss", "accuracy_predictable", "loss", "train_accuracy", "clamp_factor", "G",
              "G_frozen", "G_free", "G_L0H0", "G_L0H1", "G_L0H2", "G_L0H3", "A_param", "A_param_free", "A_learned",
              "A_activation_L0", "sigma_sq_L0", "sigma_sq_token_L0", "A_site", "sigma_sq_site"]
    assert list(exp_a.metric_keys("control")) == common  # one layer, four heads by default
    assert list(exp_a.metric_keys("constraint")) == common
    for condition in exp_a.CLAMP_KINDS:
        assert list(exp_a.metric_keys(condition)) == [*common, "A_site_preclamp", "sigma_sq_site_preclamp"]
    two = list(exp_a.metric_keys("control", 2, 1))
    assert two[9:11] == ["G_L0H0", "G_L1H0"] and two[14:20] == ["A_activation_L0", "sigma_sq_L0", "sigma_sq_token_L0",
                                                                 "A_activation_L1", "sigma_sq_L1", "sigma_sq_token_L1"]


# --- a whole run's log, on a two-head model small enough to run in each test ---------------------------

MINI = dict(vocab_size=6, seq_len=14, d_model=16, n_heads=2, d_head=8, d_mlp=16, n_train=64, n_heldout=40, batch_size=16,
            lr=2e-2, epochs=2, frozen_heads=[1], calibration_batches=1, probe_size=4, log_dense_every=2, log_sparse_every=3,
            log_dense_until=4, log_fast_change=1.0, n_layers=2, frozen_layers=[0, 1], clamp_hook="ln_final.hook_out",
            g_window=2, checkpoint_every=3)  # 4 steps an epoch, 8 in all; 40 held-out sequences, 32 of them in full batches

SUMMARY_KEYS = {"total_steps", "logged_steps", "duration_seconds", "final_psi_accuracy", "final_heldout_loss",
                "final_accuracy_predictable", "fixed_offset_ceiling", "n_layers", "final_A_activation", "final_A_activation_L0",
                "final_sigma_sq_L0", "final_sigma_sq_L1", "final_A_param", "final_A_param_free", "final_A_learned",
                "final_A_site", "final_sigma_sq_site", "frozen_heads", "frozen_layers", "frozen_units", "free_heads",
                "frozen_slices_identical", "max_abs_change_frozen", "max_abs_change_free", "G_frozen_final", "G_frozen_min",
                "G_definition", "clamp", "clamp_factors", "clamp_effect", "steps_per_epoch", "epochs", "heldout_sequences"}


def _mini_run(condition, changes=None, calibration=None, with_settings=True):
    settings = {**MINI, **(changes or {})}
    cfg = _exp_a_config(settings)
    return cfg, exp_a.run_condition(condition, cfg, 3, settings=settings if with_settings else None, calibration=calibration)


def _heldout(cfg):
    return exp_a.task_data(cfg, 3)[1]


def test_a_control_runs_summary_is_complete_and_read_from_its_own_logs():
    cfg, run = _mini_run("control")
    doc = run.document
    summary, metrics, last = doc["summary"], doc["metrics"], doc["metrics"][-1]
    assert set(summary) == SUMMARY_KEYS | {"calibration"}
    assert doc["provenance"]["config"] == MINI and "transformer-lens" in doc["provenance"]["versions"]
    # dense every 2 steps before step 4, every 3 after (Ψ never moves by more than 1), and the last step
    assert [m["step"] for m in metrics] == [0, 2, 6, 8] and summary["logged_steps"] == 4
    assert sorted(doc["checkpoints"], key=int) == ["0", "3", "6", "8"]  # every checkpoint_every steps and the end
    from weightlab.separability.auditlog import state_sha256
    assert doc["checkpoints"]["8"] == "sha256:" + state_sha256(run.model.state_dict())  # the model handed back
    for record in metrics:
        assert set(record) == {"step", "timestamp", *exp_a.metric_keys("control", 2, 2)}
        heads = {h: record[f"G_{h}"] for h in ("L0H0", "L0H1", "L1H0", "L1H1")}
        if record["step"] == 0:
            assert record["loss"] is None and record["train_accuracy"] is None and set(heads.values()) == {None}
            continue
        assert record["loss"] > 0 and record["train_accuracy"] * 16 == round(record["train_accuracy"] * 16)  # one batch
        assert record["G"] == pytest.approx(sum(heads.values()) / 4)
        assert record["G_frozen"] == pytest.approx((heads["L0H1"] + heads["L1H1"]) / 2)  # the heads the constraint freezes
        assert record["G_free"] == pytest.approx((heads["L0H0"] + heads["L1H0"]) / 2)
        assert record["clamp_factor"] is None
    assert summary["G_frozen_min"] == min(m["G_frozen"] for m in metrics[1:]) and summary["G_frozen_final"] == last["G_frozen"]
    assert {k: summary[f"final_{k}"] for k in ("psi_accuracy", "heldout_loss", "accuracy_predictable", "A_activation_L0",
                                                  "sigma_sq_L0", "sigma_sq_L1", "A_param", "A_param_free", "A_learned",
                                                  "A_site", "sigma_sq_site")} == {k: last[k] for k in (
        "psi_accuracy", "heldout_loss", "accuracy_predictable", "A_activation_L0", "sigma_sq_L0", "sigma_sq_L1", "A_param",
        "A_param_free", "A_learned", "A_site", "sigma_sq_site")}
    assert summary["final_A_activation"] == last["A_activation_L1"]  # the last layer's residual stream
    # the held-out numbers are those of the returned model on the full batches of the held-out set (32 of 40)
    assert exp_a.evaluate(run.model, _heldout(cfg), [], 16) == pytest.approx(
        {k: last[k] for k in ("psi_accuracy", "heldout_loss", "accuracy_predictable")})
    assert {k: summary[k] for k in ("n_layers", "steps_per_epoch", "epochs", "heldout_sequences", "total_steps")} == {
        "n_layers": 2, "steps_per_epoch": 4, "epochs": 2, "heldout_sequences": 32, "total_steps": 8}
    assert {k: summary[k] for k in ("frozen_heads", "frozen_layers", "frozen_units", "free_heads", "clamp", "clamp_factors",
                                    "clamp_effect", "frozen_slices_identical")} == {
        "frozen_heads": [], "frozen_layers": [], "frozen_units": [], "free_heads": [0, 1], "clamp": None,
        "clamp_factors": None, "clamp_effect": None, "frozen_slices_identical": None}
    assert run.clamp is None and run.freeze == {k: summary[k] for k in run.freeze} and "max_abs_change_free" in run.freeze
    assert summary["calibration"]["clamp_hook"] == "ln_final.hook_out" and summary["calibration"]["hook"] == "ln_final.hook_out"
    assert "G_frozen averages the heads ['L0H1', 'L1H1']" in summary["G_definition"]


class _RecordingAdam(torch.optim.Adam):
    """Adam that keeps the learning rate of every step it takes."""

    def __init__(self, params, lr, seen):
        super().__init__(params, lr=lr)
        self.seen = seen

    def step(self, closure=None):
        self.seen.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_a_clamped_constrained_run_clamps_trains_and_logs_as_configured(monkeypatch):
    """naive_clamp at the final LayerNorm's output, calibrated at another site (a calibration_hook): the
    clamp acts at clamp_hook, in training and evaluation; three of four heads frozen; cosine learning
    rate after a 2-step warm-up; Ψ changes counted as fast at any size (log_fast_change −1)."""
    lrs: list[float] = []
    monkeypatch.setattr(exp_a, "make_optimiser", lambda cfg, model: _RecordingAdam(model.parameters(), cfg.lr, lrs))
    calibration = {"hook": "blocks.1.hook_resid_post", "target_norm": 3.0, "healthy_std": 1.0}
    cfg, run = _mini_run("naive_clamp", {"lr_schedule": "cosine", "warmup_steps": 2, "log_fast_change": -1.0},
                         calibration, with_settings=False)
    doc = run.document
    summary, metrics = doc["summary"], doc["metrics"]
    assert set(summary) == SUMMARY_KEYS | {"final_A_site_preclamp", "final_sigma_sq_site_preclamp"}
    assert doc["provenance"]["config"] == dataclasses.asdict(cfg)  # no settings given: the config's values
    assert lrs == pytest.approx([2e-2 * min(1.0, (t + 1) / 2) * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)])
    # fast from the second log on: dense (every 2 steps) to the end
    assert [m["step"] for m in metrics] == [0, 2, 4, 6, 8]
    assert summary["clamp"] == {"kind": "naive", "hook": "ln_final.hook_out", "target_norm": 3.0}
    assert run.clamp == exp_a.Clamp("naive", "ln_final.hook_out", 3.0)
    factors = summary["clamp_factors"]
    assert len(factors) == 8 and len(set(factors)) == 8  # each training step's factor, measured on its own batch
    assert summary["clamp_effect"]["n_steps"] == 8
    assert summary["clamp_effect"]["median"] == pytest.approx(sum(sorted(factors)[3:5]) / 2)
    for record in metrics:
        assert record["clamp_factor"] == (factors[record["step"] - 1] if record["step"] else None)
        assert record["A_site"] == pytest.approx(3.0, rel=1e-5)
    heldout = _heldout(cfg)
    clamped = exp_a.evaluate(run.model, heldout, [run.clamp.fwd_hook()], 16)
    assert clamped == pytest.approx({k: summary[f"final_{k}"] for k in ("psi_accuracy", "heldout_loss", "accuracy_predictable")})
    assert exp_a.evaluate(run.model, heldout, [], 16)["heldout_loss"] != pytest.approx(clamped["heldout_loss"])
    assert {k: summary[k] for k in ("frozen_heads", "frozen_layers", "frozen_units", "free_heads", "frozen_slices_identical",
                                    "max_abs_change_frozen")} == {
        "frozen_heads": [1], "frozen_layers": [0, 1], "frozen_units": ["L0H1", "L1H1"], "free_heads": [0],
        "frozen_slices_identical": True, "max_abs_change_frozen": 0.0}
    assert run.freeze == {k: summary[k] for k in run.freeze}


# --- the observables a run logs (weightlab.separability.observables), on constructed inputs -----------


def test_psi_accuracy_reads_the_last_axis_of_logits_with_positions():
    from weightlab.separability.observables import psi_accuracy

    logits = torch.zeros(2, 3, 4)  # [batch, position, class]
    logits[0, :, 1] = 1.0  # row 0 predicts class 1 everywhere
    logits[1, :, 2] = 1.0  # row 1 predicts class 2 everywhere
    targets = torch.tensor([[1, 1, 0], [2, 3, 3]])
    assert psi_accuracy(logits, targets) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="do not match"):
        psi_accuracy(logits, targets[:, :2])


def test_js_divergence_stays_inside_zero_one_bit_where_rounding_would_leave_it():
    """Rounding makes the raw sum slightly negative for nearly equal distributions and slightly above
    1 bit for disjoint ones; the divergence is clamped so its square root (the distance) is defined."""
    from weightlab.separability.observables import js_distance, js_divergence

    p = torch.rand(2000, 7, generator=torch.Generator().manual_seed(0)).double()
    near = js_divergence(p, p * 1.0000001)
    assert float(near.min()) == 0.0 and bool(torch.isfinite(js_distance(p, p * 1.0000001)).all())
    a, b = torch.zeros(20), torch.zeros(20)
    a[:10], b[10:] = 1.0, 1.0  # disjoint uniform distributions over 10 entries each
    assert float(js_divergence(a, b)) == 1.0 and float(js_distance(a, b)) == 1.0


def test_routing_plasticity_counts_rows_live_in_either_pattern():
    """Rows: (a) masked in both: ignored; (b) live before only and (c) live now only: JSD 1/2 bit each
    (against an all-zero row, M = q / 2); (d) unchanged: 0. G = 1 − mean(1/2, 1/2, 0) = 2/3."""
    from weightlab.separability.observables import routing_plasticity

    previous = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.0, 0.0], [0.25, 0.75]])
    current = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.25, 0.75]])
    assert routing_plasticity(previous, current) == pytest.approx(2 / 3)
    assert routing_plasticity(previous[[0, 2]], current[[0, 2]]) == pytest.approx(0.5)
    assert routing_plasticity(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3)) == 1.0  # nothing live: nothing moved


def test_pattern_history_takes_a_pattern_exactly_one_window_old():
    from weightlab.separability.observables import PatternHistory

    history = PatternHistory(window=4)
    first, second = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    history.add(0, first)
    history.add(4, second)
    assert torch.equal(history.reference(8), second)  # 8 − 4 = 4 steps: old enough
    assert torch.equal(history.reference(7), first)


def test_token_spread_and_centred_variance_of_known_tokens():
    """Tokens ±1 and ±2 alternating over d_model = 4: their stds (n − 1) are √(4/3) and 2√(4/3), mean
    √3, squared 3; about their mean vector (±1.5) every entry is 0.5 off: variance 0.25."""
    from weightlab.separability.observables import a_activation, sigma_sq, sigma_sq_token_spread

    resid = torch.tensor([[[1.0, -1.0, 1.0, -1.0], [2.0, -2.0, 2.0, -2.0]]])  # [batch 1, position 2, d_model 4]
    assert sigma_sq_token_spread(resid) == pytest.approx(3.0)
    assert sigma_sq(resid) == pytest.approx(0.25)
    assert a_activation(resid) == pytest.approx((2.0 + 4.0) / 2)


def test_log_schedule_boundaries():
    from weightlab.separability.observables import LogSchedule

    def due(schedule, steps=10):
        return [s for s in range(steps) if schedule.due(s)]

    # dense (every 2) before step 4, sparse (every 3) from step 4 on, and the last step (9)
    assert due(LogSchedule(10, 2, 3, 4, band=None)) == [0, 2, 6, 9]
    assert due(LogSchedule(10, 1, 5, 3, band=None)) == [0, 1, 2, 5, 9]  # every step while dense
    # a change of exactly fast_change is not fast; a larger one is
    schedule = LogSchedule(10, 1, 5, 0, fast_change=0.25, band=None)
    schedule.observe(0.25)
    schedule.observe(0.5)
    assert not schedule.due(3)
    schedule.observe(0.875)
    assert schedule.due(3)
    # inside the band (strictly) is fast; its edges are not
    for psi, fast in ((0.5, True), (0.25, False), (0.75, False)):
        schedule = LogSchedule(10, 1, 5, 0, fast_change=1.0, band=(0.25, 0.75))
        schedule.observe(psi)
        assert schedule.due(3) is fast, psi


def test_aggregate_final_of_known_values():
    from weightlab.separability.observables import aggregate_final

    out = aggregate_final({"a": [1.0, 3.0], "b": [2.0, 4.0, 6.0], "c": [5.0]}, pairs=[("b", "a")])
    conditions = out["conditions"]
    assert conditions["a"] == {"values": [1.0, 3.0], "n": 2, "mean": 2.0, "std": pytest.approx(math.sqrt(2))}
    assert conditions["b"] == {"values": [2.0, 4.0, 6.0], "n": 3, "mean": 4.0, "std": pytest.approx(2.0)}
    assert set(conditions["c"]) == {"values", "n", "mean", "std"} and conditions["c"]["mean"] == 5.0
    assert math.isnan(conditions["c"]["std"])  # one value: no sample std
    assert set(out["cohens_d"]) == {"b_vs_a"}


def test_a_run_that_names_no_frozen_heads_has_no_g_frozen_and_logs_on_the_sparse_rhythm():
    """frozen_heads = [] is a valid setting: G_frozen averages no heads, so it is None at every log and
    in the summary (not an error). With dense_until 0 and Ψ never "fast" (change > 1, no band) the
    log is every 3rd step: 0, 3 and the last (4)."""
    _, run = _mini_run("control", {"frozen_heads": [], "epochs": 1, "log_dense_until": 0, "log_dense_every": 1,
                                   "log_sparse_every": 3})
    summary, metrics = run.document["summary"], run.document["metrics"]
    assert [m["step"] for m in metrics] == [0, 3, 4]
    assert [m["G_frozen"] for m in metrics] == [None, None, None]
    assert summary["G_frozen_min"] is None and summary["G_frozen_final"] is None
    assert metrics[-1]["G_free"] == pytest.approx(metrics[-1]["G"])  # every head is free
