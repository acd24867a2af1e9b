"""The separability study's shared pieces: observables on cases with known values, the audit-log
schema, the hooked toy transformer, and the design's names."""

import hashlib
import json
import math
import subprocess
from datetime import datetime

import numpy as np
import pytest
import torch

from weightlab.checkpoints import load_checkpoint, save_checkpoint
from weightlab.errors import InputError
from weightlab.separability import design
from weightlab.separability import observables as obs
from weightlab.separability.auditlog import AuditLog, run_name, state_sha256, validate_audit_log, without_timestamps
from weightlab.separability.toy import ARCHITECTURES, ToyConfig, ToyTransformer


def test_jsd_of_identical_patterns_is_zero_and_of_disjoint_ones_is_one_bit():
    p = torch.softmax(torch.randn(3, 4, 6, 6), -1)
    assert torch.allclose(obs.js_divergence(p, p), torch.zeros(3, 4, 6, dtype=torch.float64), atol=1e-12)
    assert obs.routing_plasticity(p, p) == pytest.approx(1.0)
    one_hot = torch.eye(4)
    assert torch.allclose(obs.js_divergence(one_hot, one_hot.roll(1, 0)), torch.ones(4, dtype=torch.float64))
    assert obs.routing_plasticity(one_hot, one_hot.roll(1, 0)) == pytest.approx(0.0)


def test_jsd_matches_scipy_in_bits():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7))
    expected = jensenshannon(p, q, base=2) ** 2  # scipy returns the distance, the square root
    assert float(obs.js_divergence(torch.tensor(p), torch.tensor(q))) == pytest.approx(expected, rel=1e-9)


def test_routing_plasticity_ignores_masked_rows_and_checks_shapes():
    p = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    q = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    assert obs.routing_plasticity(p, q) == 1.0
    with pytest.raises(ValueError, match="shape"):
        obs.routing_plasticity(p, torch.ones(3, 2))


def test_amplitudes_and_variance_of_known_tensors():
    resid = torch.tensor([[[3.0, 4.0], [6.0, 8.0]]])  # norms 5 and 10
    assert obs.a_activation(resid) == pytest.approx(7.5)
    # centred on the token mean (4.5, 6): deviations (∓1.5, ∓2) -> mean square (2.25 + 4) / 2
    assert obs.sigma_sq(resid) == pytest.approx(3.125)
    assert obs.sigma_sq(resid + 100.0) == pytest.approx(3.125)  # a mean shift is not variance
    assert obs.a_param([torch.full((2, 2), 1.0), torch.full((4,), 2.0)]) == pytest.approx(math.sqrt(4 + 16))
    assert obs.a_learned(torch.tensor([1.0, 3.0])) == 2.0 and obs.a_learned(None) is None
    layers = obs.layer_observables([resid, 2 * resid])
    assert layers["A_activation_L1"] == pytest.approx(15.0) and layers["sigma_sq_L1"] == pytest.approx(12.5)


def test_psi_measures():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    assert obs.psi_accuracy(logits, torch.tensor([0, 1])) == 0.5
    assert obs.psi_logit_diff(logits, torch.tensor([0, 2]), torch.tensor([1, 1])) == pytest.approx((1.0 + 2.0) / 2)


def test_aggregate_final_gives_each_conditions_spread_and_cohens_d():
    agg = obs.aggregate_final({"x": [1, 2, 3], "y": [4, 5, 6]}, [("y", "x")])
    assert agg["cohens_d"]["y_vs_x"] == pytest.approx(3.0) and agg["conditions"]["x"]["std"] == pytest.approx(1.0)


def test_log_schedule_is_dense_early_and_around_fast_changes():
    schedule = obs.LogSchedule(total_steps=1000, dense_every=10, sparse_every=100, dense_until=50, band=None)
    early = [s for s in range(0, 50) if schedule.due(s)]
    assert early == [0, 10, 20, 30, 40]
    schedule.observe(0.1)
    assert not schedule.due(510) and schedule.due(500) and schedule.due(999)
    schedule.observe(0.5)  # Ψ jumped: dense again
    assert schedule.due(510)
    schedule.observe(0.505)
    assert not schedule.due(520)


def _log(**overrides):
    log = AuditLog("a", "control", 3, {"epochs": 1})
    log.record(0, psi_accuracy=0.25, A_learned=None, G=float("nan"))
    log.checkpoint(0, {"w": torch.zeros(2)})
    return log


def test_audit_log_document_validates_and_cleans_values():
    doc = _log().document(total_steps=10, final_accuracy=0.5)
    assert doc["metadata"]["experiment"] == "exp_a_control" and doc["metadata"]["seed"] == 3  # the original's names
    assert without_timestamps(doc["metrics"])[0] == {"step": 0, "psi_accuracy": 0.25, "A_learned": None, "G": None}
    assert datetime.fromisoformat(doc["metrics"][0]["timestamp"]).tzinfo is not None  # a timestamp per row, as the original
    assert doc["checkpoints"]["0"] == "sha256:" + state_sha256({"w": torch.zeros(2)})
    assert run_name(doc["metadata"]["experiment"]) == run_name("a_control") == "a_control"
    assert doc["summary"]["total_steps"] == 10 and doc["summary"]["logged_steps"] == 1
    assert set(doc["provenance"]) >= {"config", "seed", "git_commit", "versions"}


def test_audit_log_schema_names_what_is_wrong():
    doc = _log().document(total_steps=1)
    doc["metrics"][0]["psi_accuracy"] = "high"
    with pytest.raises(InputError, match="metrics/0/psi_accuracy"):
        validate_audit_log(doc)
    del doc["checkpoints"]
    with pytest.raises(InputError, match="checkpoints"):
        validate_audit_log(doc)


def test_audit_log_record_stores_plain_json_numbers():
    """numpy and torch scalars become floats, ints stay ints, a bool is a number (1.0), inf is None."""
    row = AuditLog("a", "control", 3, {}).record(1, a=np.float32(0.5), t=torch.tensor(0.25), n=3, flag=True, big=np.inf)
    expected = {"step": 1, "a": 0.5, "t": 0.25, "n": 3, "flag": 1.0, "big": None}
    assert json.loads(json.dumps(without_timestamps([row])[0])) == expected
    assert [type(row[k]) for k in ("a", "t", "n", "flag")] == [float, float, int, float]


def test_audit_log_summary_times_the_run_and_provenance_records_config_seed_and_packages(monkeypatch):
    from weightlab.separability import auditlog

    clock = [100.0, 101.23456]  # the start, then every later reading
    monkeypatch.setattr(auditlog.time, "perf_counter", lambda: clock.pop(0) if len(clock) > 1 else clock[0])
    doc = AuditLog("c", "no_wd", 7, {"lr": 0.1}, packages=("jsonschema",)).document(total_steps=2, grokked=True)
    assert doc["summary"] == {"total_steps": 2, "logged_steps": 0, "duration_seconds": 1.235, "grokked": True}
    assert doc["provenance"]["config"] == {"lr": 0.1} and doc["provenance"]["seed"] == 7
    assert doc["provenance"]["versions"]["jsonschema"] is not None


def test_state_hash_of_bfloat16_and_bool_tensors_is_their_bytes():
    """bfloat16 (which numpy lacks) hashes as its 2-byte words; an odd-length bool tensor as its bytes."""
    state = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "mask": torch.tensor([True, False, True])}
    expected = hashlib.sha256(b"mask|torch.bool|(3,)|\x01\x00\x01" + b"w|torch.bfloat16|(2,)|\x80\x3f\x00\x40").hexdigest()
    assert state_sha256(state) == expected


def test_state_hash_is_content_based():
    a = {"w": torch.arange(4.0), "b": torch.ones(1)}
    b = {"b": torch.ones(1), "w": torch.arange(4.0)}
    assert state_sha256(a) == state_sha256(b)
    b["w"][0] = 1e-7
    assert state_sha256(a) != state_sha256(b)


def test_toy_transformer_uses_transformerlens_names_and_hooks():
    torch.manual_seed(0)
    model = ToyTransformer(ToyConfig(d_vocab=11, n_ctx=5, d_model=16, n_heads=4, d_head=4, d_mlp=32))
    assert model.blocks[0].attn.W_Q.shape == (4, 16, 4) and model.blocks[0].attn.W_O.shape == (4, 4, 16)
    tokens = torch.randint(0, 11, (3, 5))
    logits, cache = model.run_with_cache(tokens)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones(3, 4, 5))
    assert torch.all(pattern.triu(1) == 0)  # causal
    # a hook that zeroes the residual stream reaches the logits: interventions are hooks, not edits
    zeroed = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: torch.zeros_like(x))])
    assert not torch.allclose(zeroed, logits)
    assert torch.allclose(zeroed, model.unembed(model.ln_final(torch.zeros(3, 5, 16))), atol=1e-6)


def _reference_logits(model: ToyTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The toy transformer written with torch's own layer norm and causal attention: embeddings, per
    block (LN) attention and (LN) ReLU MLP added to the residual stream, (LN) unembedding."""
    c = model.cfg
    f = torch.nn.functional

    def norm(x, ln):
        return f.layer_norm(x, (c.d_model,), ln.w, ln.b, eps=1e-5) if c.normalization == "LN" else x

    x = model.embed.W_E[tokens] + model.pos_embed.W_pos[: tokens.shape[1]]
    for block in model.blocks:
        a, h = block.attn, norm(x, block.ln1)
        q, k, v = (torch.einsum("bpd,hdk->bhpk", h, w) + b[:, None] for w, b in ((a.W_Q, a.b_Q), (a.W_K, a.b_K), (a.W_V, a.b_V)))
        x = x + torch.einsum("bhpk,hkd->bpd", f.scaled_dot_product_attention(q, k, v, is_causal=True), a.W_O) + a.b_O
        if c.d_mlp:
            m = block.mlp
            x = x + f.relu(norm(x, block.ln2) @ m.W_in + m.b_in) @ m.W_out + m.b_out
    return norm(x, model.ln_final) @ model.unembed.W_U + model.unembed.b_U


@pytest.mark.parametrize("normalization, n_layers", [("LN", 2), (None, 1)])
def test_toy_forward_matches_its_definition_with_random_parameters(normalization, n_layers):
    """Every parameter drawn at random (biases, LayerNorm scales and shifts too), with and without
    LayerNorm: the logits are the definition's; without LayerNorm there is none anywhere."""
    torch.manual_seed(0)
    model = ToyTransformer(ToyConfig(d_vocab=11, n_ctx=6, d_model=8, n_heads=2, d_head=4, n_layers=n_layers, d_mlp=12,
                                     normalization=normalization))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    tokens = torch.randint(0, 11, (3, 5))
    assert torch.allclose(model(tokens), _reference_logits(model, tokens), atol=1e-5)
    assert model.ln_final_scale() is (model.ln_final.w if normalization else None)
    # the state is the parameters (the causal mask is rebuilt from n_ctx, never stored in a checkpoint)
    assert set(model.state_dict()) == {name for name, _ in model.named_parameters()}


def test_toy_transformer_from_keyword_arguments():
    model = ToyTransformer(d_vocab=7, n_ctx=3, d_model=8, n_heads=2, d_head=4, d_mlp=None)
    assert model.cfg == ToyConfig(d_vocab=7, n_ctx=3, d_model=8, n_heads=2, d_head=4, d_mlp=None)


def test_initialisation_draws_weights_and_zeroes_every_bias():
    model = ToyTransformer(ToyConfig(d_vocab=11, n_ctx=5, d_model=64, n_heads=4, d_head=16, d_mlp=32))
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("b_") or leaf == "b":
            assert torch.count_nonzero(param) == 0, name  # per-head biases are 2-D and must still start at 0
        elif leaf == "w":
            assert torch.all(param == 1), name
        else:
            assert float(param.detach().std()) == pytest.approx(0.8 / 8, rel=0.15), name
    narrow = ToyTransformer(ToyConfig(d_vocab=11, n_ctx=5, d_model=64, n_heads=4, d_head=16, d_mlp=32, init_range=0.02))
    assert float(narrow.embed.W_E.detach().std()) == pytest.approx(0.02, rel=0.15)  # init_range, when given, wins


def test_last_position_only_leaves_the_final_logits_pattern_row_and_residual_unchanged():
    """mlp_positions='last' (attention queries and MLP at the final position): what C trains on and
    measures (final logits, the final query's pattern row, the final residual, and gradients) is the
    full model's; the other positions differ; two layers are refused."""
    torch.manual_seed(1)
    cfg = dict(d_vocab=13, n_ctx=3, d_model=16, n_heads=2, d_head=8, d_mlp=24, normalization=None)
    full = ToyTransformer(ToyConfig(**cfg))
    last = ToyTransformer(ToyConfig(**cfg, mlp_positions="last"))
    last.load_state_dict(full.state_dict())
    tokens = torch.randint(0, 13, (5, 3))
    hooks = ["blocks.0.attn.hook_pattern", "blocks.0.hook_resid_post"]
    _, cache_full = full.run_with_cache(tokens, names_filter=hooks)
    _, cache_last = last.run_with_cache(tokens, names_filter=hooks)
    assert cache_last[hooks[0]].shape == (5, 2, 1, 3)
    assert torch.allclose(cache_full[hooks[0]][:, :, -1:], cache_last[hooks[0]], atol=1e-6)
    assert torch.allclose(cache_full[hooks[1]][:, -1], cache_last[hooks[1]][:, -1], atol=1e-6)
    # the other positions keep their embeddings: the residual stream is still one vector per position
    embedded = last.embed(tokens) + last.pos_embed(tokens)
    assert cache_last[hooks[1]].shape == (5, 3, 16) and torch.equal(cache_last[hooks[1]][:, :-1], embedded[:, :-1])
    assert torch.allclose(full(tokens)[:, -1], last(tokens)[:, -1], atol=1e-6)
    assert not torch.allclose(full(tokens)[:, 0], last(tokens)[:, 0])
    for model in (full, last):
        model(tokens)[:, -1].logsumexp(-1).sum().backward()
    for (name, a), b in zip(full.named_parameters(), last.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    with pytest.raises(ValueError, match="one layer"):
        ToyTransformer(ToyConfig(**{**cfg, "n_layers": 2}, mlp_positions="last"))


def test_toy_checkpoint_round_trip(tmp_path):
    cfg = ToyConfig(d_vocab=7, n_ctx=3, d_model=8, n_heads=2, d_head=4, d_mlp=None, normalization=None)
    model = ToyTransformer(cfg)
    save_checkpoint(tmp_path / "toy.pt", model, "toy_transformer", cfg.as_dict())
    loaded, payload = load_checkpoint(tmp_path / "toy.pt", ARCHITECTURES)
    tokens = torch.randint(0, 7, (2, 3))
    assert torch.equal(loaded(tokens), model.eval()(tokens)) and payload["arch"] == "toy_transformer"


def test_design_names_every_log_once():
    settings = {"seeds": [0, 1], **{f"exp_{letter}": {} for letter in design.CONDITIONS}}
    logs = design.study_audit_logs(settings)
    assert len(logs) == len(set(logs)) == 2 * sum(len(c) for c in design.CONDITIONS.values())
    own_seeds = design.study_audit_logs({**settings, "exp_b": {"seeds": [5]}})  # an experiment's own seeds win
    assert {log for log in own_seeds if "_exp_b_" in log} == {design.audit_log_path("b", c, 5) for c in design.CONDITIONS["b"]}
    assert design.audit_log_path("c", "high_wd", 0) == "results/separability/audit_log_exp_c_high_wd_seed_0.json"
    with pytest.raises(KeyError):
        design.log_name("a", "high_wd")
    with pytest.raises(KeyError):
        design.log_name("z", "control")  # an experiment that does not exist
    assert all(log.startswith("elsewhere/audit_log_exp_") for log in design.study_audit_logs(settings, root="elsewhere"))
    # a rule's params: the experiment's block without its seeds (adding a seed re-runs nothing)
    assert design.experiment_settings("a", {"seeds": [0], "exp_a": {"seeds": [1, 2], "lr": 0.1, "n_layers": 2}}) == {
        "lr": 0.1, "n_layers": 2}


def test_audit_git_commit_falls_back_to_the_package_outside_a_checkout(tmp_path, monkeypatch):
    """Outside a git checkout the audit log's commit comes from the installed package: pip's
    direct_url.json commit where there is one, else name==version."""
    from weightlab.separability import auditlog

    outside = tmp_path / "not_a_checkout"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))

    class Dist:
        version = "9.8.7"

        def __init__(self, direct):
            self.direct = direct

        def read_text(self, name):
            return self.direct if name == "direct_url.json" else None

    monkeypatch.setattr(auditlog.importlib.metadata, "distribution", lambda name: Dist(None))
    assert auditlog.audit_git_commit(outside) == "weightlab==9.8.7"
    vcs = '{"url": "https://example.org/weightlab.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}}'
    monkeypatch.setattr(auditlog.importlib.metadata, "distribution", lambda name: Dist(vcs))
    assert auditlog.audit_git_commit(outside) == "abc123"
    checkout = tmp_path / "checkout"  # a checkout: its own commit, whatever the package says
    checkout.mkdir()
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert auditlog.audit_git_commit(checkout) == head
    monkeypatch.chdir(checkout)  # by default the library's folder, not the working directory, names the commit
    assert auditlog.audit_git_commit() != head
    for unusable in ("[1, 2]", "{not json"):  # direct_url.json that is no PEP 610 object: name==version
        monkeypatch.setattr(auditlog.importlib.metadata, "distribution", lambda name, text=unusable: Dist(text))
        assert auditlog.package_commit() == "weightlab==9.8.7"

    def missing(name):
        raise auditlog.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(auditlog.importlib.metadata, "distribution", missing)
    assert auditlog.audit_git_commit(outside) == "unknown"


def test_toy_attention_matches_the_per_head_einsum_definition():
    """The fused-matmul attention computes TransformerLens's per-head definition (random biases too)."""
    torch.manual_seed(0)
    attn = ToyTransformer(ToyConfig(d_vocab=20, n_ctx=6, d_model=8, n_heads=2, d_head=3, d_mlp=None)).blocks[0].attn
    with torch.no_grad():
        for bias in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O):
            bias.normal_()
    x = torch.randn(3, 6, 8)
    q, k, v = (torch.einsum("bpd,hdk->bphk", x, w) + b for w, b in ((attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V)))
    scores = torch.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(3)
    pattern = scores.masked_fill(~torch.tril(torch.ones(6, 6, dtype=torch.bool)), float("-inf")).softmax(-1)
    expected = torch.einsum("bqhk,hkd->bqd", torch.einsum("bhqs,bshk->bqhk", pattern, v), attn.W_O) + attn.b_O
    assert torch.allclose(attn(x), expected, atol=1e-5)
    assert torch.allclose(pattern[:, :, 0, 0], torch.ones(3, 2))  # the first query sees only itself
