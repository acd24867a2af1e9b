"""The shared entry of every workflow script: log file, error boundary, seeds, threads, HF environment."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from weightlab.errors import InputError
from weightlab.script import rule_step


class Params(SimpleNamespace):
    def keys(self):
        return list(vars(self))


def fake_snakemake(tmp_path, **params):
    return SimpleNamespace(input=[], output=[], params=Params(**params), wildcards=SimpleNamespace(), threads=1,
                           log=[str(tmp_path / "logs" / "step.log")])


def test_a_weightlab_error_is_one_line_and_exit_status_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        with rule_step(fake_snakemake(tmp_path)) as step:
            step.log.info("started")
            raise InputError("results/x.json is not valid JSON; delete it and re-run its rule.")
    assert exit_info.value.code == 1
    log = (tmp_path / "logs/step.log").read_text()
    assert "started" in log and "weightlab error: results/x.json is not valid JSON" in log and "Traceback" not in log


def test_any_other_error_keeps_its_traceback_in_the_log(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with rule_step(fake_snakemake(tmp_path)):
            1 / 0  # noqa: B018
    assert "Traceback" in (tmp_path / "logs/step.log").read_text()


def test_seed_reproduces_draws_and_defaults_to_the_params_seed(tmp_path):
    import torch

    with rule_step(fake_snakemake(tmp_path, seed=7, device="cpu")) as step:
        first = torch.randperm(10, generator=step.seed())
        again = torch.randperm(10, generator=step.seed(7))
        other = torch.randperm(10, generator=step.seed(8))
        assert step.device == torch.device("cpu")
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_offline_param_sets_the_hub_variables_and_a_plotting_step_never_imports_torch(tmp_path):
    code = (
        "import os, sys\n"
        "from types import SimpleNamespace\n"
        "from weightlab.script import rule_step\n"
        "class P(SimpleNamespace):\n"
        "    def keys(self): return list(vars(self))\n"
        f"smk = SimpleNamespace(input=[], output=[], params=P(offline=True), wildcards=None, threads=1, log=[{str(tmp_path / 's.log')!r}])\n"
        "with rule_step(smk):\n"
        "    pass\n"
        "print(os.environ['HF_HUB_OFFLINE'], 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert out == ["1", "False"]
