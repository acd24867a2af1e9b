"""Readable messages for configuration errors, one line per problem, naming the key."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

import jsonschema
import yaml


def load_schema(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = "" if where == "(top level)" else f"{where}."
        return "; ".join(f"config key {prefix}{key}: unknown key (allowed here: {', '.join(allowed)})" for key in unknown)
    if error.validator == "required":
        return f"config key {where}: {error.message}"
    if error.validator == "pattern" and error.schema.get("description"):
        rule = " ".join(str(error.schema["description"]).split())
        return f"config key {where}: {error.instance!r} is refused: {rule}"
    return f"config key {where}: {error.message}"


def config_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every schema violation in `config`, as 'config key a.b.c: what is wrong'."""
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    return [_describe(e) for e in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))]


def check_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Raise ValueError listing every problem, with the schema file to read for the keys."""
    errors = config_errors(config, load_schema(schema_path))
    if errors:
        raise ValueError(
            "invalid configuration:\n  " + "\n  ".join(errors)
            + f"\nEvery key, its type and its default are documented in {schema_path}."
        )


def machine_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_core_limit(requested: int | None, local: bool, cpus: int | None = None) -> int | None:
    """The core count a local run should schedule with when `requested` (--cores) exceeds the
    machine's CPUs; None when nothing should change (a cluster run, or cores within the machine)."""
    cpus = machine_cpus() if cpus is None else cpus
    if not local or requested is None or requested <= cpus:
        return None
    return cpus


T = TypeVar("T")


def settings_dataclass(cls: type[T], settings: Mapping[str, Any], key: str, ignore: tuple[str, ...] = ("seeds",), **convert: Any) -> T:
    """A settings dataclass from a config block: unknown keys and missing required ones are one
    error naming the block (`key`, e.g. 'separability.exp_c'); keys in `ignore` belong to the
    workflow and are skipped; `convert` maps a field to a function applied to its value."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {k: v for k, v in settings.items() if k not in ignore}
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing, unknown = sorted(required - set(given)), sorted(set(given) - set(fields))
    if missing or unknown:
        from weightlab.errors import InputError

        raise InputError(f"{key}: missing keys {missing}, unknown keys {unknown}; see schemas/config.schema.yaml.")
    values = {k: convert[k](v) if k in convert else v for k, v in given.items()}
    return cls(**values)


def settings_fields(cls: type[T], settings: Mapping[str, Any], key: str, **convert: Any) -> T:
    """`settings_dataclass` on the keys of `settings` that are fields of `cls`: for a block whose
    other keys belong to other readers (a study block one rule passes whole). A missing field is
    one error naming `key`; a misspelt key in the block is the schema's to refuse."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return settings_dataclass(cls, {k: v for k, v in settings.items() if k in names}, key, **convert)
