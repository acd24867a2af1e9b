# Study 1: Git Re-Basin under spurious features (shared/sources/000_*.txt).
# environments -> train A/R models -> verify mechanisms (SRS) -> align -> interpolate -> barriers.
from weightlab.rebasin.design import GROUPS, interpolation_alphas, model_names, model_pairs, pair_key

REBASIN = config["rebasin"]
REBASIN_MODELS = model_names(GROUPS, REBASIN["seeds"])
REBASIN_PAIRS = model_pairs(REBASIN["seeds"], REBASIN["pairs"])  # (ref, other, same|different)
REBASIN_MODEL = "[AR][0-9]+"
# Where an output shows in the HTML report (snakemake --report).
REBASIN_FIGURE = dict(category="Re-Basin", subcategory="Figures")
REBASIN_TABLE = dict(category="Re-Basin", subcategory="Key tables")
REBASIN_OUTPUTS = [
    "results/barriers.json",
    "results/rebasin/srs.json",
    "results/rebasin/summary.json",
    "results/rebasin/final_report.json",
    "results/rebasin/criteria.json",
    "results/rebasin/environments_preview.png",
    "results/rebasin/figures/training_curves.png",
    "results/rebasin/figures/barrier_comparison.png",
    "results/rebasin/figures/interpolation_paths.png",
    "results/rebasin/figures/summary.png",
    "results/rebasin/tables.html",
    *expand("results/checkpoints/model_{model}.pt", model=REBASIN_MODELS),
    *[f"results/checkpoints/model_{other}_aligned_to_{ref}.pt" for ref, other, _ in REBASIN_PAIRS],
]


# Per pair key ('A1-A2'): its interpolation file and its alignment record.
REBASIN_INTERPOLATIONS = {pair_key(r, o): f"results/rebasin/interpolation/{r}_{o}.json" for r, o, _ in REBASIN_PAIRS}
REBASIN_ALIGNMENTS = [f"results/rebasin/alignment/{o}_to_{r}.json" for r, o, _ in REBASIN_PAIRS]


wildcard_constraints:
    model=REBASIN_MODEL,
    ref=REBASIN_MODEL,
    other=REBASIN_MODEL,


rule rebasin:
    input:
        REBASIN_OUTPUTS,
    localrule: True


rule rebasin_environments:
    input:
        "results/data/images.npz",
    output:
        "results/rebasin/environments.npz",
    params:
        patch=REBASIN["patch"],
        robust_mix=REBASIN["robust_mix"],
        seed=config["seed"],
    log:
        "results/logs/rebasin/environments.log",
    benchmark:
        "results/benchmarks/rebasin/environments.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/environments.py"


rule rebasin_preview:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
    output:
        report("results/rebasin/environments_preview.png", caption="../report/rebasin/environments.rst", **REBASIN_FIGURE),
    params:
        patch=REBASIN["patch"],
    log:
        "results/logs/rebasin/preview.log",
    benchmark:
        "results/benchmarks/rebasin/preview.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/preview.py"


rule rebasin_train:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
    output:
        checkpoint="results/checkpoints/model_{model}.pt",
        history="results/rebasin/training/{model}.json",
    params:
        model=REBASIN["model"],
        train=REBASIN["train"],
        patch=REBASIN["patch"],
        shared_seed=REBASIN["shared_seed"],
        monitor_size=REBASIN["monitor_size"],
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/rebasin/train/{model}.log",
    benchmark:
        "results/benchmarks/rebasin/train/{model}.tsv"
    threads: config["threads"]["train"]
    resources: mem_mb=1500, gpu=1
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/train.py"


rule rebasin_training_curves:
    input:
        expand("results/rebasin/training/{model}.json", model=REBASIN_MODELS),
    output:
        report("results/rebasin/figures/training_curves.png", caption="../report/rebasin/training_curves.rst", **REBASIN_FIGURE),
    log:
        "results/logs/rebasin/training_curves.log",
    benchmark:
        "results/benchmarks/rebasin/training_curves.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/training_curves.py"


rule rebasin_verify:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
        checkpoints=expand("results/checkpoints/model_{model}.pt", model=REBASIN_MODELS),
    output:
        "results/rebasin/srs.json",
    params:
        patch=REBASIN["patch"],
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/rebasin/verify.log",
    benchmark:
        "results/benchmarks/rebasin/verify.tsv"
    threads: config["threads"]["eval"]
    resources: mem_mb=2000, gpu=1
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/verify.py"


rule rebasin_align:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
        ref="results/checkpoints/model_{ref}.pt",
        other="results/checkpoints/model_{other}.pt",
    output:
        checkpoint="results/checkpoints/model_{other}_aligned_to_{ref}.pt",
        match="results/rebasin/alignment/{other}_to_{ref}.json",
    params:
        matching=REBASIN["matching"],
        patch=REBASIN["patch"],
        seed=config["seed"],
    log:
        "results/logs/rebasin/align/{other}_to_{ref}.log",
    benchmark:
        "results/benchmarks/rebasin/align/{other}_to_{ref}.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/align.py"


rule rebasin_interpolate:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
        ref="results/checkpoints/model_{ref}.pt",
        other="results/checkpoints/model_{other}.pt",
        aligned="results/checkpoints/model_{other}_aligned_to_{ref}.pt",
    output:
        "results/rebasin/interpolation/{ref}_{other}.json",
    params:
        alphas=interpolation_alphas(REBASIN["interpolation"]["num_alphas"]),
        interpolation=REBASIN["interpolation"],
        patch=REBASIN["patch"],
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/rebasin/interpolate/{ref}_{other}.log",
    benchmark:
        "results/benchmarks/rebasin/interpolate/{ref}_{other}.tsv"
    threads: config["threads"]["eval"]
    resources: mem_mb=1500, gpu=1
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/interpolate.py"


rule rebasin_barriers:
    input:
        **REBASIN_INTERPOLATIONS,
    output:
        "results/barriers.json",
    params:
        kinds={pair_key(ref, other): kind for ref, other, kind in REBASIN_PAIRS},
        rebasin=REBASIN,
        seed=config["seed"],
    log:
        "results/logs/rebasin/barriers.log",
    benchmark:
        "results/benchmarks/rebasin/barriers.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/barriers.py"


rule rebasin_summary:
    input:
        barriers="results/barriers.json",
        srs="results/rebasin/srs.json",
        matches=REBASIN_ALIGNMENTS,
        histories=expand("results/rebasin/training/{model}.json", model=REBASIN_MODELS),
    output:
        summary="results/rebasin/summary.json",
        report="results/rebasin/final_report.json",
        criteria="results/rebasin/criteria.json",
    params:
        rebasin=REBASIN,
        data=config["data"],
        seed=config["seed"],
    log:
        "results/logs/rebasin/summary.log",
    benchmark:
        "results/benchmarks/rebasin/summary.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/summary.py"


rule rebasin_figures:
    input:
        barriers="results/barriers.json",
        srs="results/rebasin/srs.json",
        report="results/rebasin/final_report.json",
    output:
        summary=report("results/rebasin/figures/summary.png", caption="../report/rebasin/summary.rst", **REBASIN_FIGURE),
        barriers=report("results/rebasin/figures/barrier_comparison.png", caption="../report/rebasin/barriers.rst", **REBASIN_FIGURE),
        paths=report("results/rebasin/figures/interpolation_paths.png", caption="../report/rebasin/paths.rst", **REBASIN_FIGURE),
    log:
        "results/logs/rebasin/figures.log",
    benchmark:
        "results/benchmarks/rebasin/figures.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/figures.py"


rule rebasin_tables:
    input:
        barriers="results/barriers.json",
        srs="results/rebasin/srs.json",
        report="results/rebasin/final_report.json",
    output:
        tables=report("results/rebasin/tables.html", caption="../report/rebasin/tables.rst", **REBASIN_TABLE),
    log:
        "results/logs/rebasin/tables.log",
    benchmark:
        "results/benchmarks/rebasin/tables.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/tables.py"
