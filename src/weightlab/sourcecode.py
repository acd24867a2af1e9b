"""Which library code a workflow script runs, as one digest, so that Snakemake re-runs a rule
when that code changes.

Snakemake re-runs a script rule when its script changes (mtime) but cannot see the library
modules the script imports, where the science lives. Each rule therefore has a ``library``
param: the digest of the source of every ``weightlab`` module its script imports, followed
transitively (imports inside functions too, since those run when the function does). A change
to one of those modules changes the param and re-runs the rule and what depends on it; a change
to a module the rule never imports re-runs nothing.

Plumbing modules, which move files and messages but cannot change a number (`PLUMBING`:
atomic writes, logging and error boundaries, provenance, config messages), are left out, so a
fix to a log line does not retrain every model. Read while parsing: imports nothing beyond the
standard library.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

PLUMBING = frozenset({"weightlab.io", "weightlab.script", "weightlab.provenance", "weightlab.errors", "weightlab.config",
                      "weightlab.sourcecode"})


@lru_cache(maxsize=1)
def library_root() -> Path:
    """The folder of the installed (or editable) weightlab package, found without importing it."""
    spec = importlib.util.find_spec("weightlab")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("weightlab is not installed; run ./setup.sh (pip install -e .).")
    return Path(next(iter(spec.submodule_search_locations)))


def _module_file(name: str, root: Path) -> Path | None:
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> frozenset[str]:
    """Every absolute module name `path` imports (`from a.b import c` gives a.b and a.b.c)."""
    stat = path.stat()
    return _parsed_imports(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=512)
def _parsed_imports(path: str, mtime_ns: int, size: int) -> frozenset[str]:  # cached per file version
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def library_modules(script: str | Path, root: Path | None = None, exclude: frozenset[str] = PLUMBING) -> dict[str, Path]:
    """name -> source file of every weightlab module `script` runs, transitively, without `exclude`
    (a package's ``__init__`` counts when it is imported, as Python runs it)."""
    root = root or library_root()
    found: dict[str, Path] = {}
    pending = [Path(script)]
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in sorted(_imported_names(path)):
            if not (name == "weightlab" or name.startswith("weightlab.")) or name in exclude:
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                prefix = ".".join(parts[:depth])
                module_file = _module_file(prefix, root)
                if module_file is not None and prefix not in exclude and prefix not in found:
                    found[prefix] = module_file
                    pending.append(module_file)
    return dict(sorted(found.items()))


def library_digest(script: str | Path, root: Path | None = None) -> str:
    """16 hex digits of sha256 over the source of every module `library_modules` finds."""
    digest = hashlib.sha256()
    for name, path in library_modules(script, root).items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
