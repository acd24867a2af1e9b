"""The design of the geometry-retrofit study: methods, run names and the settings each uses.

Torch-free: the workflow reads it while parsing.
"""

from __future__ import annotations

from typing import Any, Mapping

METHODS = ("standard", "gram", "geometry")
RUNS = {"standard": "standard", "gram_only": "gram", "geometry": "geometry"}  # file stem -> method
METRICS = ("conditioning", "activation_conditioning", "perplexity", "loss")  # measured along every trajectory


def method_settings(method: str, train: Mapping[str, Any]) -> dict[str, Any]:
    """The `retrofit.train` settings as a method uses them: what it does not use is 0, off
    (standard: gram_weight and glt_interval; gram: glt_interval), so changing it re-runs only
    the methods that use it. Keys sorted: a preset that overrides a key moves it to the end of the
    merged block, and Snakemake would see the reordered params as changed."""
    unused = {"standard": ("gram_weight", "glt_interval"), "gram": ("glt_interval",), "geometry": ()}[method]
    return {k: 0 if k in unused else train[k] for k in sorted(train)}
