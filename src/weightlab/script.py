"""The boundary between a workflow step and the library: logging and error reporting."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from typing import Iterator

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
