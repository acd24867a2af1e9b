# Validation of the config and the input functions that turn it into file lists.
import os

import numpy as np

from snakemake.utils import validate

from weightlab.config import check_config

# One readable line per problem first, then Snakemake's validation, which fills defaults.
check_config(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))
validate(config, schema="../schemas/config.schema.yaml")

REBASIN = config["rebasin"]
REBASIN_MODELS = [f"{group}{seed}" for group in ("A", "R") for seed in REBASIN["seeds"]]


wildcard_constraints:
    model="[AR][0-9]+",
    ref="[AR][0-9]+",
    other="[AR][0-9]+",


def rebasin_pairs():
    from weightlab.rebasin import model_pairs

    return model_pairs(REBASIN["seeds"], REBASIN["pairs"])


def rebasin_alphas():
    return np.linspace(0.0, 1.0, REBASIN["interpolation"]["num_alphas"]).round(6).tolist()


def rebasin_outputs():
    pairs = rebasin_pairs()
    return [
        "results/barriers.json",
        "results/rebasin/srs.json",
        "results/rebasin/summary.json",
        "results/rebasin/final_report.json",
        "results/rebasin/environments_preview.png",
        "results/rebasin/figures/training_curves.png",
        "results/rebasin/figures/barrier_comparison.png",
        "results/rebasin/figures/interpolation_paths.png",
        *expand("results/checkpoints/model_{model}.pt", model=REBASIN_MODELS),
        *[f"results/checkpoints/model_{other}_aligned_to_{ref}.pt" for ref, other, _ in pairs],
    ]


def rebasin_pair_files(pattern):
    return [pattern.format(ref=ref, other=other) for ref, other, _ in rebasin_pairs()]
