"""The design of the geometry-retrofit study: methods, run names and the settings each uses.

Torch-free: the workflow reads it while parsing.
"""

from __future__ import annotations

from typing import Any, Mapping

METHODS = ("standard", "gram", "geometry")
RUNS = {"standard": "standard", "gram_only": "gram", "geometry": "geometry"}  # file stem -> method
METRICS = ("conditioning", "activation_conditioning", "perplexity", "loss")  # measured along every trajectory


def method_settings(method: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The retrofit settings a method uses: standard ignores gram_weight and glt_interval, gram
    ignores glt_interval (so changing them re-runs only the methods that use them)."""
    unused = {"standard": ("gram_weight", "glt_interval"), "gram": ("glt_interval",), "geometry": ()}[method]
    return {k: v for k, v in settings.items() if k not in unused}
