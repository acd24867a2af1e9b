"""Bad configurations fail at start-up with the offending key named."""

from pathlib import Path

import pytest
import yaml

from conftest import ROOT, snakemake
from weightlab.config import config_errors, load_schema

SCHEMA = load_schema(ROOT / "schemas" / "config.schema.yaml")


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def merged(override: dict) -> dict:
    def merge(base, extra):
        for key, value in extra.items():
            base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return base
    return merge(default_config(), override)


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")) + ["config.yaml"])
def test_every_preset_is_valid(preset):
    path = ROOT / preset if preset == "config.yaml" else ROOT / "configs" / preset
    assert config_errors(merged(yaml.safe_load(path.read_text()) or {}), SCHEMA) == []


@pytest.mark.parametrize(
    "override, expected",
    [
        ({"rebasin": {"train": {"epochz": 3}}}, "rebasin.train.epochz: unknown key"),
        ({"rebasin": {"train": {"epochs": "many"}}}, "rebasin.train.epochs: 'many' is not of type 'integer'"),
        ({"rebasin": {"patch": {"p_align_a": 1.5}}}, "rebasin.patch.p_align_a: 1.5 is greater than the maximum of 1"),
        ({"rebasin": {"seeds": [1]}}, "rebasin.seeds"),
        ({"data": {"name": "mnist"}}, "data.name: 'mnist' is not one of"),
        ({"device": "tpu"}, "config key device"),
        ({"sed": 1}, "config key sed: unknown key"),
        ({"rebasin": {"interpolation": {"num_alphas": 1}}}, "rebasin.interpolation.num_alphas"),
    ],
)
def test_bad_values_name_the_key(override, expected):
    errors = config_errors(merged(override), SCHEMA)
    assert any(expected in e for e in errors), errors


def test_snakemake_stops_at_start_with_the_key(workflow_copy: Path):
    (workflow_copy / "configs" / "typo.yaml").write_text("rebasin:\n  model:\n    widht: 8\n")
    result = snakemake(workflow_copy, "-n", "all", configfiles=("configs/smoke.yaml", "configs/typo.yaml"), check=False)
    assert result.returncode != 0
    assert "config key rebasin.model.widht: unknown key" in result.stdout + result.stderr


def test_local_core_limit_caps_local_runs_at_the_machine_only():
    from weightlab.config import local_core_limit

    assert local_core_limit(8, local=True, cpus=2) == 2  # --cores 8 on a 2-core machine runs as --cores 2
    assert local_core_limit(2, local=True, cpus=2) is None and local_core_limit(8, local=True, cpus=16) is None
    assert local_core_limit(8, local=False, cpus=2) is None  # a cluster run keeps what it is given


def test_settings_dataclass_names_missing_and_unknown_keys():
    import dataclasses

    from weightlab.config import settings_dataclass
    from weightlab.errors import InputError

    @dataclasses.dataclass
    class Settings:
        steps: int
        lr: float = 0.1

    assert settings_dataclass(Settings, {"steps": 3, "seeds": [0]}, "x.y") == Settings(3, 0.1)
    assert settings_dataclass(Settings, {"steps": "4"}, "x.y", steps=int).steps == 4
    with pytest.raises(InputError, match=r"x\.y: missing keys \['steps'\], unknown keys \['epochz'\]"):
        settings_dataclass(Settings, {"epochz": 1}, "x.y")
