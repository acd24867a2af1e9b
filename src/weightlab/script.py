"""The boundary between a workflow step and the library: log, threads, device, seed, errors.

Every workflow script starts with ``with rule_step(snakemake) as step:`` and then only reads its
inputs and params, calls the library and writes its outputs. The step sends output to the rule's
log, sets the Hugging Face variables when the rule has an ``offline`` param (before transformers
is imported), gives torch the rule's threads and resolves ``params.device`` on first use (so a
plotting step never imports torch), and is the error boundary.

Every failure of a step ends in exactly one line on the terminal (stderr), also written to the
rule's log, and exit status 1; no Python traceback reaches the terminal:

    weightlab error in rule <rule>: <what is wrong, naming the file or config key>; <what to do>

A `WeightlabError` (raised by the library's readers and writers) is the line as it is. A full disk
or a permission problem anywhere is described as one (`weightlab.io.write_error`). Anything else
is unexpected: the line names the exception, the rule's inputs and the log, which keeps the
traceback (the lines before the message):

    weightlab error in rule <rule>: unexpected <Type>: <message> (inputs: <files>); the traceback
    is in <log>. If an input was damaged, delete it and re-run; otherwise report a bug with the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from functools import cached_property
from typing import IO, Any, Iterator, NoReturn, Sequence

from weightlab.errors import WeightlabError

MAX_DETAIL = 300  # characters of an unexpected exception's message kept in the line


def _one_line(text: str, limit: int | None = None) -> str:
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


def failure_line(err: BaseException, rule: str | None = None, log_path: str | os.PathLike | None = None,
                 inputs: Sequence[str] = ()) -> str:
    """The one line that reports `err` (format in the module docstring)."""
    from weightlab.io import write_error

    where = f"weightlab error in rule {rule}" if rule else "weightlab error"
    if isinstance(err, WeightlabError):
        return f"{where}: {_one_line(str(err))}"
    filename = getattr(err, "filename", None)
    problem = write_error(err, filename) if isinstance(err, OSError) and filename else None
    if problem is not None:
        return f"{where}: {_one_line(str(problem))}"
    if isinstance(err, MemoryError):
        return (f"{where}: out of memory; give the rule more memory (resources mem_mb), or run fewer jobs at once "
                "(--cores) or a smaller preset.")
    detail = _one_line(f"{type(err).__name__}: {err}", MAX_DETAIL)
    files = [str(f) for f in inputs]
    named = f" (inputs: {', '.join(files[:4])}{', ...' if len(files) > 4 else ''})" if files else ""
    log = f"the traceback is in {log_path}" if log_path else "no log file was given"
    return (f"{where}: unexpected {detail}{named}; {log}. If an input was damaged, delete it and re-run; "
            "otherwise report a bug with the log.")


def _fail(err: BaseException, rule: str | None, log_path: Any, inputs: Sequence[str], log: IO[str] | None) -> NoReturn:
    """Report `err` as one line and exit with status 1; the log gets the traceback first when the
    error is unexpected or wraps one (a reader's WeightlabError raised from a library exception)."""
    line = failure_line(err, rule, log_path, inputs)
    if log is not None:
        if not isinstance(err, WeightlabError) or err.__cause__ is not None:
            traceback.print_exception(err, file=log)
        print(line, file=log, flush=True)
    print(line, file=sys.__stderr__, flush=True)
    raise SystemExit(1) from None


@contextlib.contextmanager
def logged(log_path: str | os.PathLike | None, rule: str | None = None, inputs: Sequence[str] = ()) -> Iterator[logging.Logger]:
    """Send stdout, stderr and logging to the step's log file; any exception becomes one line on
    the terminal (and in the log, after the traceback if unexpected) and exit status 1."""
    if log_path is None:
        try:
            yield logging.getLogger("weightlab")
        except Exception as err:
            _fail(err, rule, None, inputs, None)
        return
    try:
        os.makedirs(os.path.dirname(os.fspath(log_path)) or ".", exist_ok=True)
        log = open(log_path, "w", buffering=1)
    except OSError as err:
        _fail(err, rule, None, inputs, None)
    with log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
        try:
            yield logging.getLogger("weightlab")
        except Exception as err:
            _fail(err, rule, log_path, inputs, log)


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
    inputs = [str(path) for path in getattr(smk, "input", [])]
    with logged(smk.log[0] if smk.log else None, getattr(smk, "rule", None), inputs) as log:
        if "offline" in smk.params.keys():
            from weightlab.lm import hub_environment

            hub_environment(smk.params.offline)
        yield Step(smk, log)
