"""Experiment B's IOI prompts on a word-level stand-in tokenizer whose token counts are known, and
the head addresses and ablation replacements on constructed activations."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Mapping

import pytest
import torch

from weightlab.errors import InputError
from weightlab.separability import ablation, prompts
from weightlab.separability.ablation import Head

BOS = 1
PLANTED = {"Christopher": 2, "Elizabeth": 2, "restaurant": 2, "basketball": 2}  # words of two tokens


class WordTokenizer:
    """A stand-in for a Hugging Face tokenizer: one token per word or punctuation mark, `pieces[w]`
    tokens for word w ("None" is always two, so a None rendered into a prompt changes its length),
    and `add_special_tokens=True` (the Hugging Face default) prepends BOS, as Llama's does."""

    def __init__(self, pieces: Mapping[str, int] = PLANTED, bos_token_id: int | None = BOS, offset: int = 10):
        self.pieces = {"None": 2, **pieces}
        self.bos_token_id = bos_token_id
        self.offset = offset
        self.vocab: dict[tuple[str, int], int] = {}

    def id(self, word: str, piece: int = 0) -> int:
        return self.vocab.setdefault((word, piece), self.offset + len(self.vocab))

    def __call__(self, text: str, add_special_tokens: bool = True) -> SimpleNamespace:
        ids = [self.bos_token_id] if add_special_tokens and self.bos_token_id is not None else []
        for word in re.findall(r"\w+|[^\w\s]", text):
            ids += [self.id(word, k) for k in range(self.pieces.get(word, 1))]
        return SimpleNamespace(input_ids=ids)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text)


# --- heads and ablation replacements --------------------------------------------------------------


def test_head_parse_reads_every_spelling():
    for value in ("10.3", [10, 3], (10, 3), {"layer": 10, "head": 3}, {"head": "3", "layer": "10"}):
        head = Head.parse(value)
        assert head == Head(10, 3) and (head.layer, head.head) == (10, 3)
    assert Head.parse(Head(7, 11).name) == Head(7, 11)
    with pytest.raises(ValueError):
        Head.parse("10")  # no '.': not a head address


def test_ablation_values_with_three_templates():
    """Three templates of unequal size: `mean` gives each prompt its own template's ABC mean; `resample`
    draws, with replacement and from every member, an ABC prompt of the prompt's own template."""
    groups = torch.tensor([0, 1, 2, 0, 2, 2])
    corrupted = torch.tensor([[1.0], [10.0], [100.0], [3.0], [200.0], [600.0]]).reshape(6, 1, 1).repeat(1, 2, 1)
    means = {0: 2.0, 1: 10.0, 2: 300.0}
    expected = torch.tensor([means[int(g)] for g in groups]).reshape(6, 1, 1).repeat(1, 2, 1)
    assert torch.equal(ablation.ablation_values("mean", corrupted, groups), expected)
    # 60 templates of two prompts each: row i's source is its own twin or the other member
    groups = torch.arange(60).repeat_interleave(2)
    corrupted = torch.arange(120, dtype=torch.float).reshape(120, 1, 1)
    sources = ablation.ablation_values("resample", corrupted, groups, torch.Generator().manual_seed(0)).flatten().long()
    assert torch.equal(sources // 2, groups)  # always from the prompt's own template
    first = int((sources % 2 == 0).sum())  # picks of each template's first member (half expected)
    moved = int((sources != torch.arange(120)).sum())  # rows given another prompt than their twin (half expected)
    assert 40 < first < 80 and 40 < moved < 80


def test_ablation_hooks_group_heads_by_layer_and_slice_rows():
    """Heads 1.2 and 1.0 share one hook on layer 1, head 0.1 gets layer 0's; each hook replaces only
    its heads, with the value rows of the prompts in `rows`, also where hook_z fires flat."""
    n, pos, n_heads, d_head = 5, 3, 4, 2
    value_a, value_b = torch.randn(n, pos, d_head), torch.randn(n, pos, d_head)
    hooks = ablation.ablation_hooks({Head(1, 2): value_a, Head(0, 1): None, Head(1, 0): value_b}, n_heads, slice(1, 3))
    assert [name for name, _ in hooks] == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    z = torch.randn(2, pos, n_heads * d_head)  # flat [batch, pos, head·d_head], as some bridges fire it
    layer0, layer1 = hooks[0][1](z).view(2, pos, n_heads, d_head), hooks[1][1](z).view(2, pos, n_heads, d_head)
    heads = z.view(2, pos, n_heads, d_head)
    assert torch.equal(layer0[:, :, 1], torch.zeros(2, pos, d_head))
    assert torch.equal(layer0[:, :, [0, 2, 3]], heads[:, :, [0, 2, 3]])
    assert torch.equal(layer1[:, :, 2], value_a[1:3]) and torch.equal(layer1[:, :, 0], value_b[1:3])
    assert torch.equal(layer1[:, :, [1, 3]], heads[:, :, [1, 3]])


# --- IOI prompts on the word tokenizer ------------------------------------------------------------

# with one token per word, these eight templates are 15 tokens long, the largest group of one length
FIFTEEN = [0, 4, 8, 9, 11, 13, 14, 16]


def _expected_description(n_examples: int, seed: int, bos: int | None = None) -> dict:
    return {
        "n_examples": n_examples, "seed": seed, "seq_len": 15 + (bos is not None), "prepend_bos": bos is not None,
        "bos_token_id": bos, "templates": [prompts.TEMPLATES[t] for t in FIFTEEN], "template_tokens": 15,
        "n_names": len(prompts.NAMES) - 2, "n_places": len(prompts.PLACES) - 1, "n_objects": len(prompts.OBJECTS) - 1,
        "orders": {"ABBA": n_examples // 2, "BABA": n_examples // 2},
    }


def _check_prompt(prompt: prompts.IOIPrompt, order: str) -> None:
    """The prompt's text is its template with its own fields, all single-token words of the lists."""
    assert prompt.order == order and prompt.template in FIFTEEN
    assert prompt.text == prompts.TEMPLATES[prompt.template].format(
        first=prompt.first, second=prompt.second, subject=prompt.subject, place=prompt.place, object=prompt.object)
    assert {prompt.first, prompt.second, prompt.subject} <= set(prompts.NAMES) - set(PLANTED)
    assert prompt.place in set(prompts.PLACES) - set(PLANTED) and prompt.object in set(prompts.OBJECTS) - set(PLANTED)


def test_ioi_dataset_on_a_word_tokenizer_is_the_known_one():
    """Every field of a small dataset: alternating ABBA/BABA prompts starting with ABBA, ABC twins
    with the clean prompt's template, place and object, answer ids of " IO" and " S", the
    description (as JSON, so counts stay integers), and a JSON round trip that keeps all of it."""
    tok = WordTokenizer()
    data = prompts.make_ioi_dataset(tok, 6, seed=5)
    description = dict(data.description)
    assert set(description) == set(_expected_description(6, 5)) | {"answer", "corrupted"}
    del description["answer"], description["corrupted"]  # sentences for people
    assert json.dumps(description, sort_keys=True) == json.dumps(_expected_description(6, 5), sort_keys=True)
    assert [p.order for p in data.clean] == ["ABBA", "BABA"] * 3
    for clean, corrupt, row, corrupt_row, io, s in zip(
            data.clean, data.corrupted, data.tokens, data.corrupted_tokens, data.io_ids, data.s_ids):
        _check_prompt(clean, clean.order)
        _check_prompt(corrupt, "ABC")
        assert clean.subject in (clean.first, clean.second) and clean.io != clean.subject
        assert len({corrupt.first, corrupt.second, corrupt.subject}) == 3
        assert (corrupt.template, corrupt.place, corrupt.object) == (clean.template, clean.place, clean.object)
        assert row.tolist() == [tok.id(w) for w in _words(clean.text)]  # no BOS, no special tokens
        assert corrupt_row.tolist() == [tok.id(w) for w in _words(corrupt.text)]
        assert (int(io), int(s)) == (tok.id(clean.io), tok.id(clean.subject))
    assert data.tokens.dtype == data.corrupted_tokens.dtype == torch.long
    back = prompts.IOIDataset.from_json(json.loads(json.dumps(data.to_json())), tok)
    assert (back.clean, back.corrupted, back.description) == (data.clean, data.corrupted, data.description)
    for name in ("tokens", "corrupted_tokens", "io_ids", "s_ids"):
        assert torch.equal(getattr(back, name), getattr(data, name)), name
    with pytest.raises(InputError, match="tokenize differently"):
        prompts.IOIDataset.from_json(data.to_json(), WordTokenizer(offset=1000))


def test_ioi_dataset_with_bos_prepends_it_to_both_sets_and_reads_back():
    tok = WordTokenizer()
    data = prompts.make_ioi_dataset(tok, 2, seed=1, prepend_bos=True)  # two prompts: the smallest balanced set
    assert json.dumps({k: v for k, v in data.description.items() if k not in ("answer", "corrupted")}, sort_keys=True) \
        == json.dumps(_expected_description(2, 1, bos=BOS), sort_keys=True)
    for prompt_set, tokens in ((data.clean, data.tokens), (data.corrupted, data.corrupted_tokens)):
        for prompt, row in zip(prompt_set, tokens):
            assert row.tolist() == [BOS] + [tok.id(w) for w in _words(prompt.text)]
    back = prompts.IOIDataset.from_json(data.to_json(), tok)
    assert torch.equal(back.tokens, data.tokens) and back.description["bos_token_id"] == BOS
    with pytest.raises(InputError, match="BOS"):
        prompts.make_ioi_dataset(WordTokenizer(bos_token_id=None), 2, seed=1, prepend_bos=True)


def test_ioi_dataset_needs_names_places_and_templates_at_their_thresholds():
    """Exactly 10 single-token names pass the default `min_names` (and 3 pass `min_names=3`, never
    fewer than 3); one single-token place and one object suffice, no place is refused; exactly two
    templates of one length pass the default `min_templates`."""
    only = lambda keep: {name: 2 for name in prompts.NAMES[keep:]}  # noqa: E731
    assert prompts.make_ioi_dataset(WordTokenizer(only(10)), 2, seed=0).description["n_names"] == 10
    with pytest.raises(InputError, match="names"):
        prompts.make_ioi_dataset(WordTokenizer(only(9)), 2, seed=0)
    three = prompts.make_ioi_dataset(WordTokenizer(only(3)), 2, seed=0, min_names=3)
    assert three.description["n_names"] == 3
    with pytest.raises(InputError, match="names"):
        prompts.make_ioi_dataset(WordTokenizer(only(2)), 2, seed=0, min_names=0)
    single = WordTokenizer({word: 2 for word in prompts.PLACES[1:] + prompts.OBJECTS[1:]})  # one place, one object
    lone = prompts.make_ioi_dataset(single, 2, seed=0)
    assert {(p.place, p.object) for p in lone.clean + lone.corrupted} == {(prompts.PLACES[0], prompts.OBJECTS[0])}
    with pytest.raises(InputError, match="0 places"):
        prompts.make_ioi_dataset(WordTokenizer({place: 2 for place in prompts.PLACES}), 2, seed=0)
    two = WordTokenizer({",": 3, "handed": 2, "went": 8})  # leaves two templates (12 and 17) of 16 tokens
    assert prompts.usable_templates(two, prompts.NAMES, prompts.PLACES, prompts.OBJECTS) == ([12, 17], 16)
    assert prompts.make_ioi_dataset(two, 2, seed=0).description["templates"] == [prompts.TEMPLATES[t] for t in (12, 17)]
    with pytest.raises(InputError, match="templates"):
        prompts.make_ioi_dataset(two, 2, seed=0, min_templates=3)


def test_usable_templates_break_a_tie_towards_the_shorter_length():
    """With "to" two tokens, five templates are 16 tokens long and five 17: the 16 are used."""
    tok = WordTokenizer({"to": 2})
    assert prompts.usable_templates(tok, prompts.NAMES, prompts.PLACES, prompts.OBJECTS) == ([4, 5, 8, 14, 15], 16)
