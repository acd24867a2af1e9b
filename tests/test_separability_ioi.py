"""Experiment B (IOI ablation and compensation): prompts, attribution, ablation hooks, compensation
and the self-repair decomposition, on constructed cases and on the default backbone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from weightlab.errors import InputError
from weightlab.separability import ablation, ioi, observables, prompts, selfrepair
from weightlab.separability.ablation import Head
from weightlab.separability.ioi import RunRecord

SETTINGS = {"n_name_movers": 3, "n_random_heads": 3, "ablation": "mean", "compensation_floor": 0.05}


# --- constructed cases (no model) ---------------------------------------------------------------


def _record(heads, mlps, scale, embed=1.0, constant=0.5) -> RunRecord:
    """A run of n=2 identical prompts with these projections; the logit diff is exact."""
    heads = torch.tensor(heads, dtype=torch.double).expand(2, -1, -1).clone()
    mlps = torch.tensor(mlps, dtype=torch.double).expand(2, -1).clone()
    n, layers = heads.shape[:2]
    record = RunRecord(
        logit_diff=torch.zeros(n, dtype=torch.double), io_top1=torch.ones(n, dtype=torch.bool),
        scale=torch.full((n,), float(scale), dtype=torch.double), embed=torch.full((n,), embed, dtype=torch.double),
        heads=heads, attn_bias=torch.zeros(n, layers, dtype=torch.double), mlps=mlps,
        constant=torch.full((n,), constant, dtype=torch.double), layer_observables={},
    )
    record.logit_diff = record.reconstructed()
    return record


CLEAN_HEADS = [[0.2, 0.1], [3.0, -0.4], [0.6, -1.0]]
CLEAN_MLPS = [0.1, 0.3, 0.5]


def _ablated(upstream_change: float = 0.0) -> RunRecord:
    """Head 1.0 ablated to 0; downstream head 2.1 backs off (-1.0 -> 0.2), head 2.0 unchanged,
    MLP 2 drops by 0.4, the final-norm scale grows from 2 to 2.5."""
    heads = [[0.2 + upstream_change, 0.1], [0.0, -0.4], [0.6, 0.2]]
    return _record(heads, [0.1, 0.3, 0.1], 2.5)


def test_decomposition_of_a_constructed_case_has_the_known_parts():
    clean, ablated = _record(CLEAN_HEADS, CLEAN_MLPS, 2.0), _ablated()
    parts = ioi.self_repair_decomposition(clean, ablated, [Head(1, 0)])
    assert parts["direct"] == pytest.approx(-3.0 / 2)  # the ablated head's direct effect, clean scale
    assert parts["heads"] == pytest.approx(1.2 / 2)  # downstream head 2.1 backs off by 1.2
    assert parts["mlps"] == pytest.approx(-0.4 / 2)
    total_after = ablated.total()[0].item()
    assert parts["norm"] == pytest.approx(total_after * (1 / 2.5 - 1 / 2))
    assert parts["other"] == pytest.approx(0.0, abs=1e-12)
    assert parts["total"] == pytest.approx(float(ablated.logit_diff[0] - clean.logit_diff[0]))
    assert parts["unexplained"] == pytest.approx(0.0, abs=1e-12)
    assert parts["self_repair"] == pytest.approx(parts["total"] - parts["direct"])


def test_decomposition_puts_an_upstream_change_in_other():
    clean, ablated = _record(CLEAN_HEADS, CLEAN_MLPS, 2.0), _ablated(upstream_change=0.8)
    parts = ioi.self_repair_decomposition(clean, ablated, [Head(1, 0)])
    assert parts["other"] == pytest.approx(0.8 / 2)
    assert parts["heads"] == pytest.approx(1.2 / 2)  # the upstream head is not "downstream"
    assert parts["unexplained"] == pytest.approx(0.0, abs=1e-12)


def test_compensation_of_a_constructed_case():
    clean, ablated = _record(CLEAN_HEADS, CLEAN_MLPS, 2.0), _ablated()
    comp = ioi.compensation(clean, ablated, [Head(1, 0)], floor=0.04)
    m = comp["matrix"]
    assert m[1][0] is None  # the ablated head
    assert m[0][1] == pytest.approx(1.0) and m[0][0] == pytest.approx(1.0)  # upstream: unchanged
    assert m[2][1] == pytest.approx(0.2 / -1.0)
    assert m[2][0] == pytest.approx(1.0)
    assert comp["late_layers"] == [2]  # after the first ablated layer
    assert comp["late_compensation"] == pytest.approx((0.6 + 0.2) / (0.6 - 1.0))
    assert comp["late_compensation_delta"] == pytest.approx((0.8 - (-0.4)) / 2)
    floored = ioi.compensation(clean, ablated, [Head(1, 0)], floor=0.06)["matrix"]  # head 0.1: |0.1 / 2| < 0.06
    assert floored[0][1] is None and floored[0][0] == pytest.approx(1.0)


def test_late_layers_follow_the_first_ablated_head():
    assert ioi.late_layers([Head(9, 9), Head(9, 6), Head(10, 0)], 12) == [10, 11]
    assert ioi.late_layers([Head(29, 1), Head(23, 3)], 30) == list(range(24, 30))
    assert ioi.late_layers([], 12) == []


def test_choose_heads_finds_planted_name_movers_and_random_heads_from_all_others():
    attribution = torch.linspace(-0.05, 0.05, 4 * 6).reshape(4, 6)
    planted = {Head(3, 2): 2.0, Head(2, 5): 1.5, Head(3, 0): 1.0}
    for head, value in planted.items():
        attribution[head.layer, head.head] = value
    chosen = ioi.choose_heads(attribution, 3, 3, seed=1)
    assert chosen["name_movers"] == list(planted)
    random_heads = chosen["random_heads"]
    assert len(set(random_heads)) == 3 and not set(random_heads) & set(planted)
    assert ioi.choose_heads(attribution, 3, 3, seed=1)["random_heads"] == random_heads
    picks = {h for s in range(40) for h in ioi.choose_heads(attribution, 3, 3, seed=s)["random_heads"]}
    # drawn from every head that is not a name mover, large |attribution| included
    assert picks == {Head(layer, head) for layer in range(4) for head in range(6)} - set(planted)
    with pytest.raises(InputError, match="n_random_heads"):
        ioi.choose_heads(attribution, 3, 22, seed=0)


def test_head_ablation_hook_replaces_one_slice():
    z = torch.randn(3, 5, 4, 2)
    value = torch.randn(3, 5, 2)
    out = ablation.head_ablation_hook({2: value}, 4)(z)
    assert torch.equal(out[:, :, 2], value)
    assert torch.equal(out[:, :, [0, 1, 3]], z[:, :, [0, 1, 3]])
    flat = ablation.head_ablation_hook({1: None}, 4)(z.reshape(3, 5, 8))  # a bridge that fires hook_z flat
    assert flat.shape == (3, 5, 8) and torch.equal(flat.view(3, 5, 4, 2)[:, :, 1], torch.zeros(3, 5, 2))
    assert torch.equal(flat.view(3, 5, 4, 2)[:, :, [0, 2, 3]], z[:, :, [0, 2, 3]])


def test_ablation_values_are_per_template_means_or_resamples():
    corrupted = torch.arange(6 * 2 * 1, dtype=torch.float).reshape(6, 2, 1)
    groups = torch.tensor([0, 1, 0, 1, 0, 1])
    mean = ablation.ablation_values("mean", corrupted, groups)
    assert torch.equal(mean[0], corrupted[[0, 2, 4]].mean(0)) and torch.equal(mean[1], corrupted[[1, 3, 5]].mean(0))
    assert ablation.ablation_values("zero", None, groups) is None
    resampled = ablation.ablation_values("resample", corrupted, groups, torch.Generator().manual_seed(0))
    for i in range(6):  # each row comes from an ABC prompt of its own template
        source = [j for j in range(6) if torch.equal(resampled[i], corrupted[j])]
        assert source and all(groups[j] == groups[i] for j in source)
    again = ablation.ablation_values("resample", corrupted, groups, torch.Generator().manual_seed(0))
    assert torch.equal(resampled, again)
    with pytest.raises(InputError):
        ablation.ablation_values("mean", None, groups)


def _per_prompt(heads, attn_bias, mlps, embed, scale, constant) -> RunRecord:
    """A run of prompts that differ, every projection given per prompt (the logit diff left 0)."""
    def t(x):
        return torch.tensor(x, dtype=torch.double)

    n = len(embed)
    return RunRecord(logit_diff=torch.zeros(n, dtype=torch.double), io_top1=torch.ones(n, dtype=torch.bool),
                     scale=t(scale), embed=t(embed), heads=t(heads), attn_bias=t(attn_bias), mlps=t(mlps),
                     constant=t(constant), layer_observables={})


TWO_PROMPTS = dict(
    heads=[[[0.2, 0.1], [3.0, -0.4], [0.6, -1.0]], [[1.0, 0.0], [2.0, 0.5], [-0.5, 0.5]]],  # head sums 2.5, 3.5
    attn_bias=[[0.1, 0.2, 0.3], [0.4, -0.2, 0.0]], mlps=[[0.1, 0.3, 0.5], [1.0, 0.0, -1.0]],
    embed=[1.0, -2.0], scale=[2.0, 0.5], constant=[0.5, -0.25],
)


def test_record_total_reconstruction_and_direct_effects_by_hand():
    record = _per_prompt(**TWO_PROMPTS)
    assert record.total().tolist() == pytest.approx([1.0 + 2.5 + 0.6 + 0.9, -2.0 + 3.5 + 0.2 + 0.0])  # 5.0, 1.7
    assert record.reconstructed().tolist() == pytest.approx([5.0 / 2 + 0.5, 1.7 / 0.5 - 0.25])
    other_scale = torch.tensor([1.0, 2.0], dtype=torch.double)
    assert record.reconstructed(other_scale).tolist() == pytest.approx([5.0 + 0.5, 1.7 / 2 - 0.25])
    effects = ioi.direct_effects(record)  # prompt 0 halved, prompt 1 doubled, then the mean
    assert effects["heads"].tolist() == [pytest.approx(r) for r in ([1.05, 0.025], [2.75, 0.4], [-0.35, 0.25])]
    assert effects["attn_bias"].tolist() == pytest.approx([0.425, -0.15, 0.075])
    assert effects["mlps"].tolist() == pytest.approx([1.025, 0.075, -0.875])
    assert float(effects["embed"]) == pytest.approx(-1.75) and float(effects["constant"]) == pytest.approx(0.125)
    halves = ioi.direct_effects(record, torch.full((2,), 2.0, dtype=torch.double))
    assert halves["attn_bias"].tolist() == pytest.approx([0.125, 0.0, 0.075])


def test_decomposition_puts_every_upstream_change_in_other():
    """Changes of the attention biases (+0.6), the embedding (+0.3), an upstream MLP (+0.5) and the
    constant (+0.1) are none of the ablation's parts: other = (0.6 + 0.3 + 0.5) / 2 + 0.1."""
    clean, ablated = _record(CLEAN_HEADS, CLEAN_MLPS, 2.0), _ablated()
    clean.attn_bias = torch.tensor([[0.1, -0.3, 0.5]] * 2, dtype=torch.double)
    clean.logit_diff = clean.reconstructed()
    ablated.attn_bias = clean.attn_bias + torch.tensor([0.2, 0.0, 0.4], dtype=torch.double)
    ablated.embed = ablated.embed + 0.3
    ablated.constant = ablated.constant + 0.1
    ablated.mlps[:, 0] += 0.5  # layer 0: before the ablated head's layer 1
    ablated.logit_diff = ablated.reconstructed()
    parts = ioi.self_repair_decomposition(clean, ablated, [Head(1, 0)])
    assert set(parts) == {"direct", "heads", "mlps", "norm", "other", "total", "predicted", "self_repair", "unexplained",
                          "definition"}
    assert parts["other"] == pytest.approx(0.8)
    assert parts["direct"] == parts["predicted"] == pytest.approx(-1.5)
    assert parts["heads"] == pytest.approx(0.6) and parts["mlps"] == pytest.approx(-0.2)
    assert parts["norm"] == pytest.approx(float(ablated.total()[0]) * (1 / 2.5 - 1 / 2))
    assert parts["unexplained"] == pytest.approx(0.0, abs=1e-12)


def test_compensation_reports_a_head_at_the_floor_and_nothing_without_late_layers():
    clean, ablated = _record(CLEAN_HEADS, CLEAN_MLPS, 2.0), _ablated()
    comp = ioi.compensation(clean, ablated, [Head(1, 0)], floor=0.05)  # head 0.1: |0.1 / 2| == 0.05, reported
    assert comp["matrix"][0][1] == pytest.approx(1.0)
    assert set(comp) == {"matrix", "direct_effect_before", "direct_effect_after", "floor", "late_layers",
                         "late_direct_effect_before", "late_direct_effect_after", "late_compensation",
                         "late_compensation_delta"}
    assert comp["floor"] == 0.05
    none = ioi.compensation(clean, clean, [], floor=0.0)  # no ablated head: no late layers, even at floor 0
    assert none["late_layers"] == [] and none["late_compensation"] is None and none["late_compensation_delta"] is None
    assert none["matrix"][1][0] == pytest.approx(1.0)


def test_tables_write_non_finite_values_as_null():
    table = ioi._table(torch.tensor([[1.5, float("nan")], [float("inf"), -2.0]]))
    assert table == [[1.5, None], [None, -2.0]]


def test_choose_heads_breaks_ties_by_layer_then_head_and_counts_the_pool():
    attribution = torch.zeros(4, 6)
    attribution[3, 5] = attribution[0, 3] = attribution[2, 1] = 1.0
    chosen = ioi.choose_heads(attribution, 3, 2, seed=0)
    assert chosen["name_movers"] == [Head(0, 3), Head(2, 1), Head(3, 5)]
    assert chosen["pool_size"] == 4 * 6 - 3
    flat = ioi.choose_heads(torch.zeros(4, 6), 5, 2, seed=0)  # all tied: the first five in reading order
    assert flat["name_movers"] == [Head(0, h) for h in range(5)]


def test_condition_heads_reads_each_condition_from_the_heads_document():
    doc = {"name_movers": [{"layer": 9, "head": 9, "name": "9.9"}], "random_heads": [{"layer": 2, "head": 3, "name": "2.3"}]}
    assert ioi.condition_heads("baseline", doc) == []
    assert ioi.condition_heads("critical", doc) == [Head(9, 9)]
    assert ioi.condition_heads("random", doc) == [Head(2, 3)]
    with pytest.raises(InputError, match="unknown IOI condition"):
        ioi.condition_heads("Random", doc)


# --- the readout through the final norm, on a constructed bridge ---------------------------------


def _bridge(norm, normalization_type="absent", unembed_bias=True):
    """A stand-in for the bridge: its final norm and unembedding (d_model 6, vocabulary 5), with
    `cfg.normalization_type` set to the given value (or absent)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn_like(p))
    unembed = torch.nn.Linear(6, 5, bias=unembed_bias).double()
    if not unembed_bias:  # a module without any bias attribute
        unembed = SimpleNamespace(weight=unembed.weight)
    cfg = SimpleNamespace() if normalization_type == "absent" else SimpleNamespace(normalization_type=normalization_type)
    return SimpleNamespace(cfg=cfg, ln_final=SimpleNamespace(original_component=norm.double()),
                           unembed=SimpleNamespace(original_component=unembed))


def _readout_matches_the_logit_difference(bridge, norm_scale):
    """w . x / s + constant == logit(IO) - logit(S) of x through the final norm and unembedding."""
    x = torch.randn(4, 6, dtype=torch.double) * 3 + 1.0
    io, s = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 3, 0, 1])
    w, constant = ioi.readout(bridge, io, s)
    unembed = bridge.unembed.original_component
    logits = bridge.ln_final.original_component(x) @ unembed.weight.T
    if getattr(unembed, "bias", None) is not None:
        logits = logits + unembed.bias
    rows = torch.arange(4)
    expected = logits[rows, io] - logits[rows, s]
    got = (w * x).sum(-1) / norm_scale(x) + constant
    assert torch.allclose(got.detach(), expected.detach(), atol=1e-9)


def _ln_scale(x):
    return (x.var(-1, unbiased=False) + 1e-5).sqrt()


def _rms_scale(x):
    return (x.pow(2).mean(-1) + 1e-5).sqrt()


@pytest.mark.parametrize("normalization_type", ["LN", "LNPre", "absent", None, ""])
def test_readout_through_a_layernorm_with_biases_gives_the_logit_difference(normalization_type):
    bridge = _bridge(torch.nn.LayerNorm(6, eps=1e-5), normalization_type)
    _readout_matches_the_logit_difference(bridge, _ln_scale)
    _, beta, centres = ioi._final_norm(bridge)
    assert centres and beta is not None


def test_readout_through_an_rmsnorm_without_biases_gives_the_logit_difference():
    bridge = _bridge(torch.nn.RMSNorm(6, eps=1e-5), "RMS", unembed_bias=False)
    _readout_matches_the_logit_difference(bridge, _rms_scale)
    _, beta, centres = ioi._final_norm(bridge)
    assert not centres and beta is None
    assert not ioi._final_norm(_bridge(torch.nn.RMSNorm(6), "absent"))[2]


def test_the_configs_normalization_type_decides_centring_over_the_module_class():
    """A bridge whose config says LN centres even when its module is not torch's LayerNorm (a
    re-implementation), and one whose config says RMS does not."""
    module = torch.nn.LayerNorm(6)
    plain = SimpleNamespace(weight=module.weight, bias=module.bias)  # not an nn.LayerNorm
    bridge = _bridge(torch.nn.LayerNorm(6), "LN")
    bridge.ln_final = SimpleNamespace(original_component=plain)
    assert ioi._final_norm(bridge)[2]
    assert not ioi._final_norm(_bridge(torch.nn.LayerNorm(6), "RMSPre"))[2]


# --- prompts (tokenizer only) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(lm_backbone_folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(lm_backbone_folder))


def test_ioi_prompts_are_balanced_single_token_and_one_length(tokenizer):
    data = prompts.make_ioi_dataset(tokenizer, 40, seed=3)
    orders = [p.order for p in data.clean]
    assert orders.count("ABBA") == orders.count("BABA") == 20
    assert data.tokens.shape == data.corrupted_tokens.shape and data.tokens.shape[0] == 40
    for prompt, row, io, s in zip(data.clean, data.tokens, data.io_ids, data.s_ids):
        assert prompt.io != prompt.subject and io != s
        assert {prompt.first, prompt.second} == {prompt.io, prompt.subject}
        assert (prompt.first == prompt.io) == (prompt.order == "ABBA")
        for name in (prompt.io, prompt.subject):
            assert len(tokenizer(" " + name, add_special_tokens=False).input_ids) == 1
        assert int((row == io).sum()) == 1 and int((row == s).sum()) == 2  # IO once, S twice, answer not in the prompt
        assert tokenizer.decode(row).strip() == prompt.text
    for clean, corrupt in zip(data.clean, data.corrupted):
        assert len({corrupt.first, corrupt.second, corrupt.subject}) == 3
        assert (corrupt.template, corrupt.place, corrupt.object) == (clean.template, clean.place, clean.object)
    same = prompts.make_ioi_dataset(tokenizer, 40, seed=3)
    assert torch.equal(same.tokens, data.tokens) and torch.equal(same.corrupted_tokens, data.corrupted_tokens)
    assert not torch.equal(prompts.make_ioi_dataset(tokenizer, 40, seed=4).tokens, data.tokens)
    back = prompts.IOIDataset.from_json(data.to_json(), tokenizer)
    assert torch.equal(back.tokens, data.tokens) and back.clean == data.clean


def test_ioi_prompts_refuse_what_cannot_be_balanced(tokenizer):
    with pytest.raises(InputError, match="even"):
        prompts.make_ioi_dataset(tokenizer, 7, seed=0)
    with pytest.raises(InputError, match="templates"):
        prompts.make_ioi_dataset(tokenizer, 8, seed=0, min_templates=len(prompts.TEMPLATES) + 1)
    with pytest.raises(InputError, match="names"):
        prompts.make_ioi_dataset(tokenizer, 8, seed=0, min_names=len(prompts.NAMES) + 1)
    doc = prompts.make_ioi_dataset(tokenizer, 8, seed=0).to_json()
    doc["tokens"][0][1] += 1
    with pytest.raises(InputError, match="tokenize differently"):
        prompts.IOIDataset.from_json(doc, tokenizer)


# --- the default backbone ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol(lm_backbone_folder: Path):
    from weightlab.lm.backbone import load_backbone, load_bridge

    torch.set_num_threads(1)
    backbone = load_backbone(lm_backbone_folder)
    bridge = load_bridge(backbone)
    data = prompts.make_ioi_dataset(backbone.tokenizer, 4, seed=4)  # four prompts: a forward pass costs ~0.12 s + 0.035 s a prompt;
    # seed 4: every prompt prefers IO, one by less than 1 logit (0.59)
    clean = ioi.run_ioi(bridge, data.tokens, data.io_ids, data.s_ids, check=None)
    return bridge, data, clean


@pytest.fixture(scope="module")
def plain_logits(smol) -> torch.Tensor:
    """The logits of a plain forward pass of the clean prompts (no hooks), read by two tests."""
    bridge, data, _ = smol
    with torch.no_grad():
        return bridge(data.tokens)


def test_clean_logit_difference_is_positive_on_the_default_model(smol):
    _, _, clean = smol
    assert float(clean.logit_diff.mean()) > 1.0
    assert float((clean.logit_diff > 0).double().mean()) >= 0.75


def test_attribution_adds_up_to_the_models_own_logits(smol, plain_logits):
    """Every component's direct effect (clean final-norm scale) plus the constant equals the logit
    difference of a plain forward pass without hooks."""
    _, data, clean = smol
    logits = plain_logits[:, -1]
    rows = torch.arange(len(data))
    plain = (logits[rows, data.io_ids] - logits[rows, data.s_ids]).double()
    effects = ioi.direct_effects(clean)
    per_prompt = clean.reconstructed()
    assert torch.allclose(per_prompt, plain, atol=2e-3)
    summed = effects["heads"].sum() + effects["mlps"].sum() + effects["attn_bias"].sum() + effects["embed"] + effects["constant"]
    assert float(summed) == pytest.approx(float(plain.mean()), abs=2e-3)
    assert float(clean.heads.abs().sum()) > 0 and float(effects["constant"]) == 0.0  # llama: no norm or unembedding bias


def test_ablation_hook_changes_exactly_one_head_and_the_logits(smol, plain_logits):
    bridge, data, _ = smol
    layer, head = 2, 4  # an early layer: the clean pass and capture_z stop after it
    corrupted = ioi.capture_z(bridge, data.corrupted_tokens, [layer])[layer][:, :, head]
    value = ablation.ablation_values("mean", corrupted, data.templates)
    seen: dict[str, torch.Tensor] = {}

    def grab(name):
        def hook(z, hook=None):
            seen[name] = z.detach().clone()
        return hook

    names = [ablation.z_hook_name(layer), ablation.z_hook_name(layer - 1)]
    clean_logits = plain_logits
    with torch.no_grad():
        with bridge.hooks(fwd_hooks=[(n, grab("clean" + n)) for n in names]):
            bridge(data.tokens, stop_at_layer=layer + 1)
        hooks = ablation.ablation_hooks({Head(layer, head): value}, int(bridge.cfg.n_heads), slice(0, len(data)))
        with bridge.hooks(fwd_hooks=hooks + [(n, grab("ablated" + n)) for n in names]):
            ablated_logits = bridge(data.tokens)
    z0, z1 = seen["clean" + names[0]], seen["ablated" + names[0]]
    others = [h for h in range(z0.shape[2]) if h != head]
    assert torch.equal(z1[:, :, others], z0[:, :, others])  # every other head bit-identical
    assert torch.equal(z1[:, :, head], value) and not torch.equal(z0[:, :, head], value)
    assert torch.equal(seen["clean" + names[1]], seen["ablated" + names[1]])  # the layer before: untouched
    assert float((ablated_logits - clean_logits).abs().max()) > 1e-4


def test_zero_ablation_direct_term_is_minus_the_heads_attribution(smol):
    bridge, data, clean = smol
    attribution = ioi.direct_effects(clean)["heads"]
    top = Head(*divmod(int(attribution.argmax()), attribution.shape[1]))
    ablated = ioi.run_ioi(bridge, data.tokens, data.io_ids, data.s_ids, {top: None})
    parts = ioi.self_repair_decomposition(clean, ablated, [top])
    assert parts["direct"] == pytest.approx(-float(attribution[top.layer, top.head]), abs=1e-4)
    assert parts["other"] == pytest.approx(0.0, abs=1e-5)  # nothing upstream of the ablation moved
    pieces = parts["direct"] + parts["heads"] + parts["mlps"] + parts["norm"] + parts["other"]
    assert pieces == pytest.approx(parts["total"], abs=1e-4)  # the decomposition adds up on the real model
    assert parts["total"] == pytest.approx(float((ablated.logit_diff - clean.logit_diff).mean()))


@pytest.fixture(scope="module")
def heads(smol) -> dict:
    """The heads document of the default model on the fixture's prompts, read by the tests below."""
    bridge, data, _ = smol
    return ioi.find_heads(bridge, data, SETTINGS, seed=0)


def test_heads_document_and_its_movers_on_the_default_model(smol, heads):
    """The heads file: the clean run's measures, the attribution (each head's output over the clean
    final-norm scale, mean and spread over prompts, sorted), the movers (the table's top three) and
    the seeded random heads. The first test to read `heads`: mutmut maps `find_heads` to it alone."""
    bridge, data, clean = smol
    table = heads["attribution"]["table"]
    assert [Head.parse(row) for row in table[:3]] == [Head.parse(h) for h in heads["name_movers"]]
    assert all(a["attribution"] >= b["attribution"] for a, b in zip(table, table[1:]))
    assert set(heads) == {"prompts", "clean_logit_diff", "clean_logit_diff_std", "io_over_s_rate", "io_top1_accuracy",
                          "attribution", "name_movers", "random_heads", "random_head_rule"}
    assert heads["prompts"] == data.to_json()
    ld = clean.logit_diff
    assert 0.0 < float(ld.min()) <= 1.0  # one prompt in (0, 1]: "IO over S" means a positive difference, not > 1
    assert heads["clean_logit_diff"] == pytest.approx(float(ld.mean())) and heads["clean_logit_diff_std"] == pytest.approx(float(ld.std()))
    assert heads["io_over_s_rate"] == 1.0 and heads["io_top1_accuracy"] == float(clean.io_top1.double().mean())
    per_prompt = clean.heads / clean.scale[:, None, None]
    attribution, spread = per_prompt.mean(0), per_prompt.std(0)
    att = heads["attribution"]
    assert set(att) == {"method", "matrix", "table", "mlps", "embed", "constant", "attn_bias"}
    assert torch.allclose(torch.tensor(att["matrix"], dtype=torch.double), attribution, atol=1e-6)
    n_layers, n_heads = attribution.shape
    assert len(att["table"]) == n_layers * n_heads
    for row in att["table"]:
        assert set(row) == {"layer", "head", "name", "attribution", "std"} and row["name"] == f"{row['layer']}.{row['head']}"
        assert row["attribution"] == pytest.approx(float(attribution[row["layer"], row["head"]]), abs=1e-6)
        assert row["std"] == pytest.approx(float(spread[row["layer"], row["head"]]), abs=1e-6)
    assert att["mlps"] == pytest.approx((clean.mlps / clean.scale[:, None]).mean(0).tolist(), abs=1e-6)
    assert att["embed"] == pytest.approx(float((clean.embed / clean.scale).mean()), abs=1e-6) and att["constant"] == 0.0
    assert att["attn_bias"] == pytest.approx(float((clean.attn_bias / clean.scale[:, None]).mean(0).sum()), abs=1e-6)
    chosen = ioi.choose_heads(torch.tensor(att["matrix"]), 3, 3, seed=0)
    for key in ("name_movers", "random_heads"):
        assert heads[key] == [{"layer": h.layer, "head": h.head, "name": h.name,
                               "attribution": pytest.approx(float(attribution[h.layer, h.head]), abs=1e-6)} for h in chosen[key]]
    assert heads["random_head_rule"] == {"drawn_from": "every head that is not a name mover", "n": 3,
                                         "pool_size": n_layers * n_heads - 3, "seed": 0}


def _condition_keys(n_layers: int) -> tuple[set[str], set[str]]:
    """The keys of a condition's metrics (beside the layer observables) and of its summary."""
    metrics = {"psi_logit_diff", "psi_logit_diff_clean", "delta_logit_diff", "io_over_s_rate", "io_top1_accuracy", "G",
               "A_learned", "A_param", "late_compensation", "late_compensation_delta", "late_residual_norm_ratio",
               "late_final_position_norm_ratio", "recovered_fraction", "self_repair", "norm_scale_ratio"}
    metrics |= {f"residual_norm_ratio_L{i}" for i in range(n_layers)}
    summary = {"condition", "clean_logit_diff", "ablated_logit_diff", "delta_logit_diff", "ablated_heads", "ablation",
               "n_examples", "compensation", "compensation_floor", "late_layers", "late_layers_definition",
               "late_compensation", "late_compensation_delta", "late_direct_effect_before", "late_direct_effect_after",
               "direct_effect_before", "direct_effect_after", "mlp_direct_effect_before", "mlp_direct_effect_after",
               "decomposition", "residual_norm_ratio", "late_residual_norm_ratio", "residual_norm_ratio_definition",
               "final_position_norm_ratio", "late_final_position_norm_ratio", "late_final_position_norm_ratio_ci95",
               "late_final_position_norm_ratio_interval", "recovered_fraction", "recovered_fraction_definition",
               "G_definition", "attribution_error"}
    return metrics, summary


def test_baseline_condition_on_the_default_model_changes_nothing(smol, heads):
    """No ablation: every ratio 1, every change 0, nothing recovered (also at compensation floor 0),
    and the late layers are the critical condition's, for reference."""
    bridge, data, clean = smol
    metrics, summary = ioi.run_condition(bridge, data, "baseline", heads, {**SETTINGS, "compensation_floor": 0.0}, seed=0)
    n_layers = int(bridge.cfg.n_layers)
    metric_keys, summary_keys = _condition_keys(n_layers)
    assert set(metrics) == metric_keys | set(clean.layer_observables) and set(summary) == summary_keys
    late = ioi.late_layers([Head.parse(h) for h in heads["name_movers"]], n_layers)
    assert summary["late_layers"] == late and "critical condition" in summary["late_layers_definition"]
    assert summary["delta_logit_diff"] == 0.0 and summary["late_compensation"] == pytest.approx(1.0)
    assert summary["late_compensation_delta"] == 0.0 and summary["ablation"] is None and summary["ablated_heads"] == []
    assert summary["recovered_fraction"] is None and metrics["recovered_fraction"] is None
    assert metrics["io_over_s_rate"] == 1.0  # the fixture's prompts all prefer IO, one by less than 1 logit
    assert metrics["norm_scale_ratio"] == 1.0 and metrics["late_residual_norm_ratio"] == pytest.approx(1.0)
    assert summary["final_position_norm_ratio"] == [1.0] * n_layers and metrics["late_final_position_norm_ratio"] == 1.0
    assert metrics["G"] == pytest.approx(1.0) and summary["n_examples"] == len(data)


def test_critical_condition_on_the_default_model(smol, heads):
    """The critical condition's metrics and summary are the measures of its clean and ablated runs
    (the ablated run rebuilt here from the per-template means of the ABC prompts)."""
    bridge, data, clean = smol
    movers = [Head.parse(h) for h in heads["name_movers"]]
    metrics, summary = ioi.run_condition(bridge, data, "critical", heads, SETTINGS, seed=3)
    n_layers = int(bridge.cfg.n_layers)
    corrupted = ioi.capture_z(bridge, data.corrupted_tokens, [h.layer for h in movers])
    values = {h: ablation.ablation_values("mean", corrupted[h.layer][:, :, h.head], data.templates) for h in movers}
    ablated = ioi.run_ioi(bridge, data.tokens, data.io_ids, data.s_ids, values)
    metric_keys, summary_keys = _condition_keys(n_layers)
    assert set(metrics) == metric_keys | set(clean.layer_observables) and set(summary) == summary_keys
    psi, psi_clean = float(ablated.logit_diff.mean()), float(clean.logit_diff.mean())
    assert summary["ablated_heads"] == [h.name for h in movers] and summary["ablation"] == "mean"
    assert summary["condition"] == "critical" and summary["n_examples"] == len(data) and summary["compensation_floor"] == 0.05
    assert metrics["psi_logit_diff"] == summary["ablated_logit_diff"] == pytest.approx(psi)
    assert metrics["psi_logit_diff_clean"] == summary["clean_logit_diff"] == pytest.approx(psi_clean)
    assert metrics["delta_logit_diff"] == summary["delta_logit_diff"] == pytest.approx(psi - psi_clean) and psi < psi_clean
    assert metrics["io_over_s_rate"] == float((ablated.logit_diff > 0).double().mean())
    assert metrics["io_top1_accuracy"] == float(ablated.io_top1.double().mean())
    assert 0 < metrics["G"] < 1  # the ablation moved some attention (G itself: tests/test_separability.py)
    assert metrics["A_learned"] == pytest.approx(float(bridge.ln_final.original_component.weight.detach().double().mean()))
    assert metrics["A_param"] == pytest.approx(observables.a_param([b.attn.W_V for b in bridge.blocks]))
    assert metrics["norm_scale_ratio"] == pytest.approx(float((ablated.scale / clean.scale).mean()))
    late = ioi.late_layers(movers, n_layers)
    assert summary["late_layers"] == late and "after the first ablated head" in summary["late_layers_definition"]
    comp = ioi.compensation(clean, ablated, movers, 0.05)
    assert summary["compensation"] == comp["matrix"]
    for key in ("late_compensation", "late_compensation_delta", "late_direct_effect_before", "late_direct_effect_after",
                "direct_effect_before", "direct_effect_after"):
        assert summary[key] == comp[key]
    assert metrics["late_compensation"] == comp["late_compensation"]
    assert metrics["late_compensation_delta"] == comp["late_compensation_delta"]
    assert summary["mlp_direct_effect_before"] == pytest.approx((clean.mlps / clean.scale[:, None]).mean(0).tolist())
    assert summary["mlp_direct_effect_after"] == pytest.approx((ablated.mlps / clean.scale[:, None]).mean(0).tolist())
    parts = ioi.self_repair_decomposition(clean, ablated, movers)
    assert summary["decomposition"] == parts and metrics["self_repair"] == parts["self_repair"]
    assert abs(parts["unexplained"]) < 1e-4 and parts["total"] == pytest.approx(summary["delta_logit_diff"])
    recovered = (parts["total"] - parts["direct"]) / -parts["direct"]
    assert metrics["recovered_fraction"] == summary["recovered_fraction"] == pytest.approx(recovered)
    ratio = [ablated.layer_observables[f"A_activation_L{i}"] / clean.layer_observables[f"A_activation_L{i}"] for i in range(n_layers)]
    assert summary["residual_norm_ratio"] == pytest.approx(ratio)
    assert [metrics[f"residual_norm_ratio_L{i}"] for i in range(n_layers)] == pytest.approx(ratio)
    assert metrics["late_residual_norm_ratio"] == summary["late_residual_norm_ratio"] == pytest.approx(sum(ratio[i] for i in late) / len(late))
    final = ablated.final_norms / clean.final_norms  # [prompts, layers]
    assert summary["final_position_norm_ratio"] == pytest.approx(final.mean(0).tolist())
    interval = summary["late_final_position_norm_ratio_interval"]
    expected = selfrepair.mean_interval(final[:, late].mean(1).tolist(), seed=3)
    assert interval == {**expected, "mean": pytest.approx(expected["mean"]), "ci95": pytest.approx(expected["ci95"])}
    assert interval["method"].endswith("seed 3")
    assert metrics["late_final_position_norm_ratio"] == summary["late_final_position_norm_ratio"] == pytest.approx(float(final[:, late].mean()))
    assert summary["late_final_position_norm_ratio_ci95"] == interval["ci95"] and len(interval["ci95"]) == 2
    assert 0 <= summary["attribution_error"] < 1e-3
    for key in metrics:
        if key.startswith(("A_activation_L", "sigma_sq_L")):
            assert metrics[key] == ablated.layer_observables[key]


def test_ablating_a_head_of_the_last_layer_leaves_no_late_layers(smol, heads):
    """Zero ablation (no ABC activations needed) of a final-layer head: nothing is downstream, so
    every late-layer measure is None, not a ratio over an empty set; and with a floor of 100 logits
    no ratio and no recovered fraction is reported."""
    bridge, data, _ = smol
    last = int(bridge.cfg.n_layers) - 1
    doc = {**heads, "name_movers": [{"layer": last, "head": 0, "name": f"{last}.0"}]}
    settings = {**SETTINGS, "ablation": "zero", "compensation_floor": 100.0}
    metrics, summary = ioi.run_condition(bridge, data, "critical", doc, settings, seed=0)
    assert 0.0 < abs(summary["decomposition"]["direct"]) < 100.0
    assert summary["recovered_fraction"] is None and metrics["recovered_fraction"] is None
    assert all(v is None for row in summary["compensation"] for v in row)
    assert summary["ablation"] == "zero" and summary["ablated_heads"] == [f"{last}.0"] and summary["late_layers"] == []
    for key in ("late_compensation", "late_compensation_delta", "late_residual_norm_ratio", "late_final_position_norm_ratio"):
        assert metrics[key] is None and summary[key] is None
    assert summary["late_final_position_norm_ratio_ci95"] is None
    assert summary["delta_logit_diff"] != 0.0


def test_resample_ablation_is_reproducible_from_its_seed(smol, heads, tokenizer):
    """Resampling draws with the condition's own seeded generator: the global torch seed does not
    change the ablated run (prompts of two templates, two ABC prompts each to draw from)."""
    bridge = smol[0]
    data = prompts.make_ioi_dataset(tokenizer, 4, seed=5)
    assert sorted(torch.bincount(data.templates).tolist())[-2:] == [2, 2]
    settings = {**SETTINGS, "ablation": "resample"}
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        runs.append(ioi.run_condition(bridge, data, "random", heads, settings, seed=4)[1])
    assert runs[0]["ablated_heads"] == [h["name"] for h in heads["random_heads"]] and runs[0]["ablation"] == "resample"
    assert runs[0]["ablated_logit_diff"] == runs[1]["ablated_logit_diff"]
    assert runs[0]["ablated_logit_diff"] != runs[0]["clean_logit_diff"]


# --- GPT-2 small: the known name movers ---------------------------------------------------------


def _gpt2_cached() -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return all(isinstance(try_to_load_from_cache("gpt2", f), str) for f in ("config.json", "model.safetensors"))
    except Exception:
        return False


@pytest.mark.skipif(not _gpt2_cached(), reason="gpt2 (GPT-2 small) is not in the Hugging Face cache and nothing may be downloaded here")
def test_gpt2_name_movers_are_found(tmp_path: Path):
    from weightlab.lm.backbone import load_backbone, load_bridge, prepare_backbone

    prepare_backbone("gpt2", tmp_path / "gpt2")
    backbone = load_backbone(tmp_path / "gpt2")
    bridge = load_bridge(backbone)
    data = prompts.make_ioi_dataset(backbone.tokenizer, 40, seed=0, prepend_bos=True)
    heads = ioi.find_heads(bridge, data, {**SETTINGS, "n_name_movers": 3}, seed=0)
    top = {row["name"] for row in heads["attribution"]["table"][:5]}
    assert {"9.9", "9.6", "10.0"} <= top
    assert 2.0 < heads["clean_logit_diff"] < 5.0  # the TransformerLens demo's prompts give 3.55
    clean = ioi.run_ioi(bridge, data.tokens, data.io_ids, data.s_ids)
    ablated = ioi.run_ioi(bridge, data.tokens, data.io_ids, data.s_ids, {Head(9, 9): None})
    parts = ioi.self_repair_decomposition(clean, ablated, [Head(9, 9)])
    assert parts["total"] > parts["direct"]  # self-repair: the drop is smaller than 9.9's direct effect predicts
