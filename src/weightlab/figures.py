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

Figure = plt.Figure
F = TypeVar("F", bound=Callable[..., Any])


def styled(figure_function: F) -> F:
    """Run a figure function under the project's style."""

    @functools.wraps(figure_function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(STYLE):
            return figure_function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
