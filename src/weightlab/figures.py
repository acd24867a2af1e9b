"""One figure style for every study, so the report reads as one piece of work.

Each study's figure functions (``weightlab.<study>.figures``) are decorated with `styled`: they
run under this style and return a matplotlib Figure; saving is the caller's (`io.save_figure`).
Nothing is changed globally on import.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
# Colours with a fixed meaning across studies.
KIND_COLOURS = {"same": "#1b7837", "different": "#b2182b"}  # same vs different mechanism
GROUP_COLOURS = {"A": "#d95f02", "R": "#1f78b4"}  # spurious (env A) vs robust (env A+B) models
SOLVER_COLOURS = {"gurobi": "#b2182b", "highs": "#2166ac", "": "#888888"}

Figure = plt.Figure
F = TypeVar("F", bound=Callable[..., Any])


def styled(figure_function: F) -> F:
    """Run a figure function under the project's style."""

    @functools.wraps(figure_function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(STYLE):
            return figure_function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
