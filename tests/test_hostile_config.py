"""Config values that become paths: a hostile value is refused at start-up, naming the key, before anything runs."""

from pathlib import Path

import pytest
import yaml

from conftest import ROOT, snakemake
from weightlab.config import config_errors, load_schema
from weightlab.errors import InputError
from weightlab.lm import backbone_folder, check_model_name, model_name, model_slug

SCHEMA = load_schema(ROOT / "schemas" / "config.schema.yaml")
MODEL_KEYS = ("lm.model", "retrofit.model", "separability.exp_b.model", "drift.model")
HOSTILE = {
    "parent": "..",
    "here": ".",
    "traversal": "../../etc",
    "inner-traversal": "owner/../../results",
    "absolute": "/etc/passwd",
    "absolute-dir": "/",
    "too-deep": "a/b/c",
    "empty-part": "owner//name",
    "double-dash": "owner--name",
    "leading-dash": "-rf",
    "leading-dot": ".hidden",
    "very-long": "m" * 97,
    "very-long-hub-id": "owner/" + "m" * 300,
    "non-ascii": "modèle",
    "non-ascii-digits": "gpt٢",
    "space": "my model",
    "newline": "gpt2\nrm",
    "empty": "",
}
SAFE = ("SmolLM2-135M-Instruct", "gpt2", "openai-community/gpt2", "meta-llama/Llama-2-7b-chat-hf", "Qwen/Qwen2.5-0.5B-Instruct",
        "a", "m" * 96)


def with_key(key: str, value) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    *parents, last = key.split(".")
    block = config
    for part in parents:
        block = block.setdefault(part, {})
    block[last] = value
    return config


@pytest.mark.parametrize("key", MODEL_KEYS)
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_schema_refuses_a_hostile_model_name_naming_the_key(key, value):
    errors = config_errors(with_key(key, value), SCHEMA)
    assert len(errors) == 1 and errors[0].startswith(f"config key {key}: {value!r}"), errors


@pytest.mark.parametrize("key", MODEL_KEYS)
@pytest.mark.parametrize("value", SAFE)
def test_packaged_names_and_hub_ids_pass(key, value):
    assert config_errors(with_key(key, value), SCHEMA) == []


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_slug_function_refuses_what_the_schema_refuses(value):
    with pytest.raises(InputError, match=r"^config key drift\.model: .* is not a model name"):
        backbone_folder(value, key="drift.model")
    with pytest.raises(InputError):
        model_slug(value)


@pytest.mark.parametrize("slug", ["..", ".", "", "-rf", "a..b", "owner--..", "modèle", "x" * 300])
def test_a_requested_backbone_folder_with_an_unsafe_name_is_refused(slug):
    """Rule lm_backbone's wildcard: `snakemake results/lm/models/<slug>` names the model back from the folder."""
    with pytest.raises(InputError, match=r"^the folder results/lm/models/.* is not a model name"):
        model_name(slug)


@pytest.mark.parametrize("value", SAFE)
def test_safe_names_make_one_folder_and_reverse(value):
    folder = backbone_folder(value)
    assert folder.startswith("results/lm/models/") and "/" not in folder.removeprefix("results/lm/models/")
    assert model_name(model_slug(value)) == check_model_name(value) == value


@pytest.mark.parametrize(
    "key, value",
    [("lm.model", ".."), ("separability.exp_b.model", "/tmp/elsewhere"), ("drift.model", "a/../../results"),
     ("retrofit.model", "é" * 10), ("lm.model", "x" * 500)],
    ids=["parent", "absolute", "traversal", "non-ascii", "very-long"],
)
def test_snakemake_refuses_at_start_naming_the_key_before_anything_runs(workflow_copy: Path, tmp_path: Path, key, value):
    *parents, last = key.split(".")
    override: dict = {last: value}
    for part in reversed(parents):
        override = {part: override}
    configfile = tmp_path / "hostile.yaml"
    configfile.write_text(yaml.safe_dump(override, allow_unicode=True))
    result = snakemake(workflow_copy, "-n", "all", configfiles=("configs/smoke.yaml", str(configfile)), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"config key {key}: {value!r} is refused" in output, output[-2000:]
    assert not (workflow_copy / "results").exists() and "Job stats" not in output and 'File "' not in output
