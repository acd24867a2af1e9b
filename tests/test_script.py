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


def test_any_other_error_keeps_its_traceback_in_the_log_and_ends_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        with rule_step(fake_snakemake(tmp_path)):
            1 / 0  # noqa: B018
    assert exit_info.value.code == 1
    log = (tmp_path / "logs/step.log").read_text().splitlines()
    assert log[0].startswith("Traceback") and "ZeroDivisionError" in log[-2]
    assert log[-1].startswith("weightlab error: unexpected ZeroDivisionError: division by zero")
    assert f"the traceback is in {tmp_path / 'logs' / 'step.log'}" in log[-1]


def run_failing_step(tmp_path, body: str, log: bool = True) -> subprocess.CompletedProcess:
    """A script that fails inside rule_step, run as Snakemake runs one: what reaches the terminal."""
    logs = [str(tmp_path / "logs" / "step.log")] if log else []
    code = (
        "from types import SimpleNamespace\n"
        "from weightlab.script import rule_step\n"
        "class P(SimpleNamespace):\n"
        "    def keys(self): return list(vars(self))\n"
        f"smk = SimpleNamespace(input=['results/a.npz', 'results/b.json'], output=[], params=P(), wildcards=None, threads=1,\n"
        f"                      log={logs!r}, rule='study_stage')\n"
        "with rule_step(smk):\n"
        "    print('working')\n"
        + "".join(f"    {line}\n" for line in body.splitlines())
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("from weightlab.errors import InputError\nraise InputError('results/a.npz is damaged; delete it and re-run.')",
         "weightlab error in rule study_stage: results/a.npz is damaged; delete it and re-run."),
        ("import errno, os\nraise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'results/c.pt')",
         "weightlab error in rule study_stage: no space left on /"),
        ("import errno, os\nraise PermissionError(errno.EACCES, os.strerror(errno.EACCES), 'results/c.pt')",
         "weightlab error in rule study_stage: cannot write results/c.pt: permission denied on results/c.pt"),
        ("{}['missing']", "weightlab error in rule study_stage: unexpected KeyError: 'missing' (inputs: results/a.npz, "
                          "results/b.json); the traceback is in "),
    ],
    ids=["weightlab-error", "disk-full", "permission", "unexpected"],
)
def test_every_failure_is_one_line_on_the_terminal_and_status_1(tmp_path, body, expected):
    result = run_failing_step(tmp_path, body)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    log = (tmp_path / "logs/step.log").read_text()
    assert log.startswith("working\n") and log.rstrip().endswith(result.stderr.strip())


def test_a_step_without_a_log_still_fails_in_one_line(tmp_path):
    result = run_failing_step(tmp_path, "raise ValueError('bad\\nvalue')", log=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "weightlab error in rule study_stage: unexpected ValueError: bad value (inputs: results/a.npz, results/b.json); "
        "no log file was given. If an input was damaged, delete it and re-run; otherwise report a bug with the log."
    ]


def test_an_unwritable_log_folder_is_one_line(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs").chmod(0o500)
    try:
        result = run_failing_step(tmp_path, "pass")
    finally:
        (tmp_path / "logs").chmod(0o700)
    if os.geteuid() == 0:
        pytest.skip("root writes through permissions")
    assert result.returncode == 1 and "permission denied" in result.stderr and "Traceback" not in result.stderr


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


def test_a_weightlab_error_raised_from_a_library_error_keeps_the_cause_in_the_log_only(tmp_path):
    body = "from weightlab.errors import InputError\ntry:\n    1 / 0\nexcept ZeroDivisionError as err:\n" \
           "    raise InputError('results/a.npz is damaged; delete it and re-run.') from err"
    result = run_failing_step(tmp_path, body)
    assert result.stderr.splitlines() == ["weightlab error in rule study_stage: results/a.npz is damaged; delete it and re-run."]
    log = (tmp_path / "logs/step.log").read_text()
    assert "ZeroDivisionError" in log and "Traceback" in log and log.rstrip().endswith(result.stderr.strip())
