"""The boundary between a workflow step and the library: log, threads, device, seed, errors.

Every workflow script starts with ``with rule_step(snakemake) as step:`` and then only reads its
inputs and params, calls the library and writes its outputs. The step sends output to the rule's
log, sets the Hugging Face variables when the rule has an ``offline`` param (before transformers
is imported), gives torch the rule's threads and resolves ``params.device`` on first use (so a
plotting step never imports torch), and reports a `WeightlabError` as one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from functools import cached_property
from typing import Any, Iterator

from weightlab.errors import WeightlabError


@contextlib.contextmanager
def logged(log_path: str | os.PathLike | None) -> Iterator[logging.Logger]:
    """Send stdout, stderr and logging to the step's log file. A WeightlabError becomes one
    line on the terminal (and in the log) and exit status 1; anything else keeps its traceback
    in the log."""
    if log_path is None:
        yield logging.getLogger("weightlab")
        return
    os.makedirs(os.path.dirname(os.fspath(log_path)) or ".", exist_ok=True)
    terminal = sys.__stderr__
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
        try:
            yield logging.getLogger("weightlab")
        except WeightlabError as err:
            message = f"weightlab error: {err}"
            print(message, file=log)
            print(message, file=terminal)
            raise SystemExit(1) from None
        except Exception:
            traceback.print_exc(file=log)
            print(f"unexpected error, traceback in {log_path}", file=terminal)
            raise


class Step:
    """What a workflow script needs from Snakemake's `snakemake` object, with the run set-up."""

    def __init__(self, smk: Any, log: logging.Logger) -> None:
        self.input, self.output, self.params = smk.input, smk.output, smk.params
        self.wildcards, self.threads, self.log = smk.wildcards, int(smk.threads), log
        self._configured = False

    def use_threads(self) -> None:
        """Give torch the rule's threads and make CPU kernels deterministic (once)."""
        if not self._configured:
            from weightlab.runtime import configure

            configure(self.threads)
            self._configured = True

    @cached_property
    def device(self) -> Any:
        """The torch device of ``params.device`` ('auto': CUDA when present), threads set."""
        from weightlab.runtime import resolve_device

        self.use_threads()
        return resolve_device(self.params.device)

    def seed(self, seed: int | None = None) -> Any:
        """Seed Python, numpy and torch with `seed` (default ``params.seed``); the torch generator."""
        from weightlab.runtime import seed_everything

        self.use_threads()
        return seed_everything(self.params.seed if seed is None else seed)


@contextlib.contextmanager
def rule_step(smk: Any) -> Iterator[Step]:
    """Run one workflow script: logging to ``log[0]``, the Hugging Face environment for rules
    with an ``offline`` param, and the error boundary."""
    with logged(smk.log[0] if smk.log else None) as log:
        if "offline" in smk.params.keys():
            from weightlab.lm import hub_environment

            hub_environment(smk.params.offline)
        yield Step(smk, log)
