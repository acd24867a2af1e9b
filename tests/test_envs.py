"""Every workflow script's imports (and those of the weightlab modules it uses) are in its env file."""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

# import name -> distribution name in an env file
DISTRIBUTIONS = {
    "yaml": "pyyaml", "sklearn": "scikit-learn", "transformer_lens": "transformer-lens",
    "PIL": "pillow", "snakemake": "snakemake",
}


def rules_with_scripts() -> list[tuple[str, str, str]]:
    """(rule, env file, script) for every rule in rules/*.smk."""
    found = []
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            if name and script:
                assert conda, f"rule {name.group(1)} in {smk.name} has a script but no conda env"
                found.append((name.group(1), conda.group(1), script.group(1)))
    return found


def _catches_import_error(node: ast.Try) -> bool:
    return any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers)


def imported_modules(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Top-level third-party modules imported by `path`, following weightlab's own modules."""
    seen = seen if seen is not None else set()
    if path in seen:
        return set()
    seen.add(path)
    modules = set()
    tree = ast.parse(path.read_text())
    optional = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) and _catches_import_error(t) for b in t.body for n in ast.walk(b)}
    for node in ast.walk(tree):
        if id(node) in optional:  # guarded by `except ImportError`: an optional extra
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for name in names:
            if name.startswith("weightlab"):
                module_path = ROOT / "src" / Path(*name.split("."))
                for candidate in (module_path.with_suffix(".py"), module_path / "__init__.py"):
                    if candidate.exists():
                        modules |= imported_modules(candidate, seen)
            else:
                modules.add(name.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "__future__"}


def env_packages(env_file: Path) -> set[str]:
    env = yaml.safe_load(env_file.read_text())
    packages = set()
    for dep in env["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            packages.add(re.split(r"[=<>\[ ]", item.strip())[0].lower())
    return packages


RULES = rules_with_scripts()


def test_rules_were_found():
    assert len(RULES) >= 10


@pytest.mark.parametrize("rule, env, script", RULES, ids=[r[0] for r in RULES])
def test_script_imports_are_covered_by_env(rule, env, script):
    env_file = (ROOT / "rules" / env).resolve()
    script_file = (ROOT / "rules" / script).resolve()
    packages = env_packages(env_file)
    pip = [item for dep in yaml.safe_load(env_file.read_text())["dependencies"] if isinstance(dep, dict) for item in dep.get("pip", [])]
    assert "-e ../" in pip, f"{env_file.name} does not install weightlab itself (pip: -e ../)"
    missing = {m for m in imported_modules(script_file) if DISTRIBUTIONS.get(m, m).lower().replace("_", "-") not in {p.replace("_", "-") for p in packages}}
    assert not missing, f"{script} (rule {rule}) imports {sorted(missing)}, not listed in {env}"


def pins(lines) -> dict[str, str]:
    """name -> version of every 'name==version' (extras and comments dropped)."""
    found = {}
    for line in lines:
        match = re.match(r"^\s*-?\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s#]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


REQUIREMENTS = pins((ROOT / "requirements.txt").read_text().splitlines())


def test_requirements_pin_every_package():
    unpinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#") and "==" not in line]
    assert not unpinned and "torch" in REQUIREMENTS


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_agree_with_requirements(env_file):
    env = yaml.safe_load(env_file.read_text())
    items = [item for dep in env["dependencies"] if isinstance(dep, dict) for item in dep.get("pip", [])]
    env_pins = pins(items)
    assert env_pins, f"{env_file.name} pins nothing"
    disagree = {name: (version, REQUIREMENTS.get(name)) for name, version in env_pins.items() if REQUIREMENTS.get(name) != version}
    assert not disagree, f"{env_file.name} pins differ from requirements.txt (env, requirements): {disagree}"


def test_data_package_pins_agree():
    nodeps = pins((ROOT / "requirements-nodeps.txt").read_text().splitlines())
    script = (ROOT / "envs/lm.post-deploy.sh").read_text()
    assert nodeps and pins(re.findall(r"[A-Za-z0-9_.-]+==[^\s]+", script)) == nodeps


def test_packaging_and_setup_take_pins_from_requirements():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert not re.search(r"torch==\d", (ROOT / "setup.sh").read_text()), "setup.sh must read the torch pin from requirements.txt"
