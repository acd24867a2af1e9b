"""weightlab.sourcecode: the library code a workflow script runs, and its digest (the `library` param)."""

from pathlib import Path

from conftest import ROOT
from weightlab.sourcecode import library_digest, library_modules


def make_library(root: Path) -> Path:
    """A tiny 'weightlab' package: study.science imports shared (at the top) and lazy (inside a
    function); io is plumbing; unused is imported by nobody."""
    lib = root / "weightlab"
    (lib / "study").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "study" / "__init__.py").write_text("")
    (lib / "study" / "science.py").write_text("from weightlab.shared import helper\n\ndef f():\n    import weightlab.lazy\n")
    (lib / "shared.py").write_text("import numpy\n\ndef helper():\n    return 1\n")
    (lib / "lazy.py").write_text("X = 1\n")
    (lib / "unused.py").write_text("Y = 1\n")
    (lib / "io.py").write_text("def write():\n    pass\n")
    script = root / "script.py"
    script.write_text("from weightlab.io import write\nfrom weightlab.study.science import f\n")
    return script


def test_modules_are_followed_transitively_with_plumbing_left_out(tmp_path):
    script = make_library(tmp_path)
    modules = library_modules(script, tmp_path / "weightlab")
    assert set(modules) == {"weightlab", "weightlab.study", "weightlab.study.science", "weightlab.shared", "weightlab.lazy"}


def test_digest_changes_with_the_code_the_script_runs_and_only_with_it(tmp_path):
    script = make_library(tmp_path)
    lib = tmp_path / "weightlab"
    before = library_digest(script, lib)
    (lib / "unused.py").write_text("Y = 2\n")
    (lib / "io.py").write_text("def write():\n    print('a better log line')\n")
    assert library_digest(script, lib) == before
    (lib / "lazy.py").write_text("X = 2\n")
    assert library_digest(script, lib) != before


def test_every_workflow_script_runs_library_code():
    """A real script: the Re-Basin training step runs the training loop and the models (and not,
    say, the drift study)."""
    modules = library_modules(ROOT / "workflow_scripts" / "rebasin" / "train.py")
    assert {"weightlab.vision.training", "weightlab.checkpoints", "weightlab.rebasin.models"} <= set(modules)
    assert not any(name.startswith("weightlab.drift") for name in modules)
    assert "weightlab.io" not in modules and "weightlab.script" not in modules
