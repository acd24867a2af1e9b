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


def log_path(rule_name, suffix=""):
    return f"results/logs/{rule_name}{suffix}.log"


def benchmark_path(rule_name, suffix=""):
    return f"results/benchmarks/{rule_name}{suffix}.tsv"
