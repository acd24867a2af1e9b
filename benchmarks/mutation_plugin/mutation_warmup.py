"""pytest plugin that makes benchmarks/mutation.sh's per-mutant test runs cheap.

mutmut forks one process per mutant from a server that has collected the tests. Two costs then
fall on every mutant although they do not depend on it:

- the modules a test imports only when it runs (transformers imports a model's code on first
  use, matplotlib its backend, peft and accelerate their layers): a second or more per mutant;
- pytest's clean-up calls ``gc.collect()`` five times, and in a forked child each collection walks
  (and so copies) the whole inherited heap of torch and transformers objects: 0.6 s per mutant.

With ``MUTATION_PRELOAD_RECORD=<file>`` a normal pytest run writes, in import order, the modules
its tests imported after collection. With ``MUTATION_PRELOAD=<file>`` every collection (the fork
server's warm-up, so once for all mutants) imports them and then freezes the heap
(``gc.freeze()``), so that the children's collections skip what they inherited. Neither changes
what a test computes: the same modules are imported, earlier, and frozen objects are only never
freed.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys

_before: list[str] = []


def _recordable(name: str) -> bool:
    top = name.partition(".")[0]
    return not (name.startswith(("__main__", "__mp_main__", "conftest")) or top.startswith("test_"))


def pytest_collection_finish(session) -> None:
    record = os.environ.get("MUTATION_PRELOAD_RECORD")
    if record:
        _before.extend(sys.modules)
        return
    preload = os.environ.get("MUTATION_PRELOAD")
    if preload and os.path.exists(preload):
        with open(preload) as lines:
            for name in (line.strip() for line in lines):
                if name and name not in sys.modules:
                    try:
                        importlib.import_module(name)
                    except Exception:  # noqa: BLE001 -- a module that fails to preload is imported, or fails, in the test as before
                        pass
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session) -> None:
    record = os.environ.get("MUTATION_PRELOAD_RECORD")
    if record and _before:
        seen = set(_before)
        with open(record, "w") as out:
            out.writelines(f"{name}\n" for name in list(sys.modules) if name not in seen and _recordable(name))
