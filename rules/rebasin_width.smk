# Re-Basin at several widths (target `rebasin_width`, not part of `all`): every model of the study
# trained again with rebasin.model.width and .hidden scaled by each multiplier of
# rebasin.width_sweep, every pair aligned and interpolated as in the main run (the same scripts),
# then the barriers against width. Multiplier 1 is the main run itself (its interpolation files).
from weightlab.rebasin.design import scaled_model, width_pair_file, width_tag

REBASIN_WIDTHS = [width_tag(m) for m in REBASIN["width_sweep"]]
REBASIN_WIDTH_ROOT = "results/rebasin/width/x{mult}"
REBASIN_WIDTH_MULT = "[0-9]+(\\.[0-9]+)?"


rule rebasin_width:
    input:
        "results/rebasin/width_sweep.json",
        "results/rebasin/figures/width_sweep.png",
    localrule: True


use rule rebasin_train as rebasin_width_train with:
    output:
        checkpoint=f"{REBASIN_WIDTH_ROOT}/model_{{model}}.pt",
        history=f"{REBASIN_WIDTH_ROOT}/training/{{model}}.json",
    wildcard_constraints:
        model=REBASIN_MODEL,
        mult=REBASIN_WIDTH_MULT,
    params:
        model=lambda wildcards: scaled_model(REBASIN["model"], float(wildcards.mult)),
        train=REBASIN["train"],
        patch=REBASIN["patch"],
        shared_seed=REBASIN["shared_seed"],
        monitor_size=REBASIN["monitor_size"],
        seed=config["seed"],
        device=config["device"],
    log:
        f"results/logs/rebasin/width/x{{mult}}/train/{{model}}.log",
    benchmark:
        f"results/benchmarks/rebasin/width/x{{mult}}/train/{{model}}.tsv"


use rule rebasin_align as rebasin_width_align with:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
        ref=f"{REBASIN_WIDTH_ROOT}/model_{{ref}}.pt",
        other=f"{REBASIN_WIDTH_ROOT}/model_{{other}}.pt",
    output:
        checkpoint=f"{REBASIN_WIDTH_ROOT}/model_{{other}}_aligned_to_{{ref}}.pt",
        match=f"{REBASIN_WIDTH_ROOT}/alignment/{{other}}_to_{{ref}}.json",
    wildcard_constraints:
        ref=REBASIN_MODEL,
        other=REBASIN_MODEL,
        mult=REBASIN_WIDTH_MULT,
    log:
        f"results/logs/rebasin/width/x{{mult}}/align/{{other}}_to_{{ref}}.log",
    benchmark:
        f"results/benchmarks/rebasin/width/x{{mult}}/align/{{other}}_to_{{ref}}.tsv"


use rule rebasin_interpolate as rebasin_width_interpolate with:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
        ref=f"{REBASIN_WIDTH_ROOT}/model_{{ref}}.pt",
        other=f"{REBASIN_WIDTH_ROOT}/model_{{other}}.pt",
        aligned=f"{REBASIN_WIDTH_ROOT}/model_{{other}}_aligned_to_{{ref}}.pt",
    output:
        f"{REBASIN_WIDTH_ROOT}/interpolation/{{ref}}_{{other}}.json",
    wildcard_constraints:
        ref=REBASIN_MODEL,
        other=REBASIN_MODEL,
        mult=REBASIN_WIDTH_MULT,
    log:
        f"results/logs/rebasin/width/x{{mult}}/interpolate/{{ref}}_{{other}}.log",
    benchmark:
        f"results/benchmarks/rebasin/width/x{{mult}}/interpolate/{{ref}}_{{other}}.tsv"


rule rebasin_width_sweep:
    input:
        interpolations=[width_pair_file(m, "interpolation", r, o) for m in REBASIN_WIDTHS for r, o, _ in REBASIN_PAIRS],
        alignments=[width_pair_file(m, "alignment", r, o) for m in REBASIN_WIDTHS for r, o, _ in REBASIN_PAIRS],
    output:
        sweep="results/rebasin/width_sweep.json",
        figure=report("results/rebasin/figures/width_sweep.png", caption="../report/rebasin/width_sweep.rst", **REBASIN_FIGURE),
    params:
        multipliers=[float(m) for m in REBASIN_WIDTHS],
        models={m: scaled_model(REBASIN["model"], float(m)) for m in REBASIN_WIDTHS},
        kinds={pair_key(ref, other): kind for ref, other, kind in REBASIN_PAIRS},
        rebasin=REBASIN,
        seed=config["seed"],
    log:
        "results/logs/rebasin/width_sweep.log",
    benchmark:
        "results/benchmarks/rebasin/width_sweep.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin/width_sweep.py"
