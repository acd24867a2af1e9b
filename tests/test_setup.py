"""The README's two commands and the route setup.sh takes to a Python it may install into."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_has_two_commands_and_ci_runs_the_second():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert all(c.startswith("./setup.sh && . ./env.sh && ") for c in commands)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == commands[1], "the last line of .ci/run must be the README's test command"


def which_python(tmp_path: Path, env: dict[str, str]) -> str:
    """setup.sh's choice of interpreter, run from a copy that has no .venv yet."""
    shutil.copy(ROOT / "setup.sh", tmp_path / "setup.sh")
    out = subprocess.run(["bash", str(tmp_path / "setup.sh"), "--which-python"], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system /usr/bin/python3 on this machine")
def test_setup_never_chooses_the_system_python(tmp_path):
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root")}
    python3 = shutil.which("python3", path=env["PATH"])
    if python3 is None or not os.path.realpath(python3).startswith("/usr/"):
        pytest.skip(f"python3 on the stock PATH is {python3}, not the system's")
    assert which_python(tmp_path, env) == ".venv/bin/python"


def test_setup_installs_into_an_active_environment(tmp_path):
    venv = tmp_path / "userenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(venv), "HOME": os.environ.get("HOME", "/root")}
    (tmp_path / "copy").mkdir()
    assert which_python(tmp_path / "copy", env) == str(venv / "bin" / "python3")


def test_env_sh_enters_the_project_venv_only_when_no_environment_is_active(tmp_path):
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text("export WEIGHTLAB_ENTERED=yes\n")
    shutil.copy(ROOT / "env.sh", tmp_path / "env.sh")
    script = "cd {}; . ./env.sh; echo ${{WEIGHTLAB_ENTERED:-no}}".format(tmp_path)
    plain = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    active = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": "/somewhere"}, capture_output=True, text=True, check=True)
    assert (plain.stdout.strip(), active.stdout.strip()) == ("yes", "no")
