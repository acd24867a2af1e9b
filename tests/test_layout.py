"""The top of the library names no study: a module in `src/weightlab/` or in a shared package
(`vision`, `lm`) neither imports a study package nor names one in a string (a string import,
such as 'weightlab.separability.toy:build', hides the edge from the library digest)."""

import ast
import importlib.util
from pathlib import Path

from conftest import ROOT

SHARED_PACKAGES = ("vision", "lm")


def studies(library: Path) -> set[str]:
    """Every subpackage of the library that is not a shared one."""
    return {p.parent.name for p in library.glob("*/__init__.py")} - set(SHARED_PACKAGES)


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant) and isinstance(n.body[0].value.value, str)}


def study_references(path: Path, study_names: set[str]) -> list[str]:
    """'line: name' for every import of, or string (docstrings aside) naming, weightlab.<study>."""
    prefixes = tuple(f"weightlab.{name}" for name in study_names)

    def names_study(text: str) -> bool:
        return any(text == p or text.startswith(p + ".") or text.startswith(p + ":") or f"{p}." in text
                   or f"{p}:" in text for p in prefixes)

    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: {a.name}" for a in node.names if names_study(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            found += [f"{node.lineno}: {m}" for m in modules if names_study(m)][:1]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if names_study(node.value):
                found.append(f"{node.lineno}: {node.value!r}")
    return found


def top_level_modules(library: Path) -> list[Path]:
    return sorted([*library.glob("*.py"), *(f for pkg in SHARED_PACKAGES for f in (library / pkg).rglob("*.py"))])


def layout_violations(library: Path) -> dict[str, list[str]]:
    names = studies(library)
    found = {str(p.relative_to(library)): study_references(p, names) for p in top_level_modules(library)}
    return {k: v for k, v in found.items() if v}


def test_the_checker_finds_imports_and_string_imports_of_a_study(tmp_path):
    lib = tmp_path / "weightlab"
    for package in ("study", "vision"):
        (lib / package).mkdir(parents=True)
        (lib / package / "__init__.py").write_text("")
    (lib / "__init__.py").write_text("")
    (lib / "clean.py").write_text('"""Mentions weightlab.study.x in a docstring only."""\nimport weightlab.vision\n')
    (lib / "direct.py").write_text("from weightlab.study import x\n")
    (lib / "vision" / "nested.py").write_text("import weightlab.study.deep\n")
    (lib / "by_string.py").write_text('BUILDERS = {"toy": "weightlab.study.toy:build"}\n')
    (lib / "study" / "inside.py").write_text("from weightlab.study import x\n")  # a study may import itself
    assert studies(lib) == {"study"}
    assert layout_violations(lib) == {
        "by_string.py": ["1: 'weightlab.study.toy:build'"],
        "direct.py": ["1: weightlab.study"],
        "vision/nested.py": ["1: weightlab.study.deep"],
    }


def test_the_top_of_the_library_names_no_study():
    library = ROOT / "src" / "weightlab"
    assert {"rebasin", "repair", "retrofit", "separability", "drift"} <= studies(library)
    assert layout_violations(library) == {}


PRESENTATION = {"__init__.py", "__main__.py", "figures.py", "tables.py", "settings.py"}  # display and config plumbing


def test_mutation_testing_lists_every_science_module_and_its_tests():
    """benchmarks/mutation.sh mutates each study's science modules: a module added to a study must
    be added there too (or be presentation), and every unit-test file of the study must run."""
    script = (ROOT / "benchmarks/mutation.sh").read_text()
    shared = script[script.index("  shared)\n"):]
    shared = shared[: shared.index(";;")]
    for study in ("rebasin", "repair", "retrofit", "separability", "drift"):
        block = script[script.index(f"  {study})\n"):]
        block = block[: block.index(";;")]
        for module in sorted((ROOT / "src/weightlab" / study).glob("*.py")):
            if module.name not in PRESENTATION:
                assert f"src/weightlab/{study}/{module.name}" in block + shared, f"benchmarks/mutation.sh {study}: add {module.name}"
        for test in sorted((ROOT / "tests").glob(f"test_{study}*.py")):
            if not test.stem.endswith(("_workflow", "_gpu")):
                assert f"tests/{test.name}" in block, f"benchmarks/mutation.sh {study}: add {test.name}"


def test_mutation_scores_keep_the_earlier_verdict_of_a_mutant_a_recheck_did_not_run():
    """A recheck that adds a test file makes mutmut reset every verdict and run only the mutants not
    killed before: their earlier verdicts count, the new ones win where the recheck ran them."""
    spec = importlib.util.spec_from_file_location("mutation_scores", ROOT / "benchmarks/mutation_scores.py")
    scores_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scores_module)
    earlier = ["    m.a.x_f__mutmut_1: killed", "    m.a.x_f__mutmut_2: survived", "    m.a.x_f__mutmut_3: survived",
               "    m.a.x_f__mutmut_4: not checked"]
    now = ["    m.a.x_f__mutmut_1: not checked", "    m.a.x_f__mutmut_2: killed", "    m.a.x_f__mutmut_3: survived",
           "    m.a.x_f__mutmut_4: not checked", "    m.a.x_f__mutmut_5: not checked"]
    merged = scores_module.with_earlier(now, earlier)
    by_module, not_killed = scores_module.scores(merged)
    assert by_module["m.a"] == {"killed": 2, "survived": 1, "not checked": 2}
    assert not_killed == [("m.a.x_f__mutmut_3", "survived"), ("m.a.x_f__mutmut_4", "not checked"),
                          ("m.a.x_f__mutmut_5", "not checked")]
