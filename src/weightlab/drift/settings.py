"""The drift study's settings besides the adapter and the training (`weightlab.drift.lora`), typed.

Each rule passes the keys of the ``drift:`` block its stage reads (`design.stage_settings`); its
script builds these objects from them through `weightlab.config.settings_fields`, so a missing
key is one error naming it. No field has a default: the defaults live in config.yaml and the
schema only. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from weightlab.config import settings_dataclass, settings_fields
from weightlab.drift.design import UNITS
from weightlab.errors import InputError


@dataclass(frozen=True)
class ModelSettings:
    """How a model rule loads and feeds the model: the dtype it is loaded in (a torch dtype's
    name), tokens per example, and the arithmetic of its passes (weightlab.lm.precision)."""

    dtype: str
    max_length: int
    precision: str

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift") -> "ModelSettings":
        return settings_fields(cls, settings, key, dtype=str, max_length=int, precision=str)


@dataclass(frozen=True)
class RefusalSettings:
    """The refusal probe (``drift.refusal``): new tokens judged, prompts per generation batch, and
    whether the backbone is probed before alignment too."""

    max_new_tokens: int
    batch_size: int
    before_alignment: bool

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift.refusal") -> "RefusalSettings":
        """From the ``refusal`` block of a stage's settings."""
        block = settings.get("refusal")
        if not isinstance(block, Mapping):
            raise InputError(f"{key}: missing block; see schemas/config.schema.yaml.")
        return settings_dataclass(cls, block, key, max_new_tokens=int, batch_size=int, before_alignment=bool)


@dataclass(frozen=True)
class SnipSettings:
    """SNIP scoring: decoder layers per pass over the data (0: all in one)."""

    snip_layers_per_pass: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift") -> "SnipSettings":
        return settings_fields(cls, settings, key, snip_layers_per_pass=int)


@dataclass(frozen=True)
class GroupSettings:
    """The groups' fractions (of each module's units; `random_k` of all units)."""

    snip_top_k: float
    set_diff_p: float
    set_diff_q: float
    utility_top_k: float
    random_k: float

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift") -> "GroupSettings":
        return settings_fields(cls, settings, key, snip_top_k=float, set_diff_p=float, set_diff_q=float, utility_top_k=float,
                               random_k=float)


@dataclass(frozen=True)
class LogSettings:
    """What the fine-tuning logs: drift every `drift_log_interval` steps, the refusal rates every
    `refusal_interval` steps (0: at the start and the end only); for the weight unit, how many
    weights per module besides the group weights the analysis population holds (`weight_sample`)."""

    drift_log_interval: int
    refusal_interval: int
    weight_sample: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift") -> "LogSettings":
        return settings_fields(cls, settings, key, drift_log_interval=int, refusal_interval=int, weight_sample=int)


@dataclass(frozen=True)
class UnitSettings:
    """What a neuron is (`UNITS`): ``row``, one output row of one projection, or ``weight``, one
    single weight (Wei et al.'s unit)."""

    unit: str

    def __post_init__(self) -> None:
        check_unit(self.unit)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift") -> "UnitSettings":
        return settings_fields(cls, settings, key, unit=str)


def check_unit(unit: str) -> None:
    """Refuse an unknown unit (one line)."""
    if unit not in UNITS:
        raise InputError(f"drift.unit: unknown unit {unit!r}; choose from {UNITS}.")


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``drift.analysis`` block: the decision (`effects.Thresholds`: margin, h1_min_d,
    confidence, alpha, n_boot), the power check (repeats, its bootstrap size, the largest d it
    must detect) and the preconditions' thresholds."""

    margin: float
    h1_min_d: float
    alpha: float
    confidence: float
    n_boot: int
    power_repeats: int
    power_n_boot: int
    max_detectable_d: float
    min_heldout_fall: float
    harmful_refusal_min: float
    benign_refusal_max: float

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], key: str = "drift.analysis") -> "AnalysisSettings":
        """From the ``analysis`` block of the stage's settings (every key a field)."""
        block = settings.get("analysis")
        if not isinstance(block, Mapping):
            raise InputError(f"{key}: missing block; see schemas/config.schema.yaml.")
        ints = {k: int for k in ("n_boot", "power_repeats", "power_n_boot")}
        floats = {k: float for k in ("margin", "h1_min_d", "alpha", "confidence", "max_detectable_d", "min_heldout_fall",
                                     "harmful_refusal_min", "benign_refusal_max")}
        return settings_dataclass(cls, block, key, **ints, **floats)
