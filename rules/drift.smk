# Study 5: safety-critical neuron drift under LoRA fine-tuning (shared/sources/004_*.txt), after
# Wei et al. (2024). data -> [safety alignment, default model only] -> SNIP scores on the safety
# and the utility set -> neuron groups -> LoRA fine-tuning with drift logging -> statistics,
# report, figures. Names come from torch-free weightlab.drift.design: parsing never imports torch.
#
# Threads: every drift rule runs on one thread. On the 2-core machine the study is sized for, a
# model rule given 2 threads ran several times slower than with 1 whenever anything else was
# running (torch's threads spin-wait for each other), and the two SNIP jobs then run side by side.
# On a GPU the model rules are bound by the GPU, not by CPU threads.
# LM (config["lm"]) is set in rules/lm.smk, included before this file.
from weightlab.lm import backbone_folder
from weightlab.drift.design import (
    ALIGNED_MODEL,
    ALIGNMENT,
    CRITERIA as DRIFT_CRITERIA,
    DATA,
    DRIFT_LOG,
    FIGURE_NAMES,
    FINAL_DRIFT,
    FINETUNE,
    GROUP_SUMMARY,
    GROUPS,
    REPORT,
    ROOT as DRIFT_ROOT,
    SNIP_SETS,
    STATISTICS,
    TABLES,
    all_outputs,
    figure_path,
    group_path,
    snip_scores_path,
    stage_settings,
)

DRIFT = config["drift"]
DRIFT_DEVICE = DRIFT["device"] or config["device"]
DRIFT_MODEL = DRIFT["model"] or LM["model"]
DRIFT_BACKBONE = backbone_folder(DRIFT_MODEL, key="drift.model")
# The model SNIP scores and fine-tuning starts from: the merged safety-aligned model (default DAG),
# or the model as it is (paper preset: an aligned chat model; rule drift_align is then not planned).
DRIFT_START = ALIGNED_MODEL if DRIFT["align"] else DRIFT_BACKBONE
# Everything the study's results depend on, for the provenance of statistical_results.json
# (resources and the device are how a run is done, not what it computes).
DRIFT_STUDY = {"model": DRIFT_MODEL, **{k: v for k, v in DRIFT.items() if k not in ("model", "mem_mb", "device")}}
DRIFT_GROUP_FILES = {group: group_path(group) for group in GROUPS}
DRIFT_FIGURES = {name: figure_path(name) for name in FIGURE_NAMES}
# Where an output shows in the HTML report (snakemake --report).
DRIFT_FIGURE = dict(category="Safety-neuron drift", subcategory="Figures")
DRIFT_TABLE = dict(category="Safety-neuron drift", subcategory="Key tables")
DRIFT_OUTPUTS = all_outputs(DRIFT_ROOT)


wildcard_constraints:
    snip_set="|".join(SNIP_SETS),


rule drift:
    input:
        DRIFT_OUTPUTS,
    localrule: True


rule drift_data:
    output:
        DATA,
    params:
        settings=stage_settings("data", DRIFT),
        jargon_file=LM["text"]["jargon_file"],
        seed=config["seed"],
    log:
        "results/logs/drift/data.log",
    benchmark:
        "results/benchmarks/drift/data.tsv"
    threads: 1  # reads packaged text files; no torch
    resources:
        mem_mb=500,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/drift/data.py"


rule drift_align:
    input:
        backbone=DRIFT_BACKBONE,
        data=DATA,
    output:
        model=directory(ALIGNED_MODEL),
        alignment=ALIGNMENT,
    params:
        settings=stage_settings("align", DRIFT),
        device=DRIFT_DEVICE,
        offline=LM["offline"],
        seed=config["seed"],
    log:
        "results/logs/drift/align.log",
    benchmark:
        "results/benchmarks/drift/align.tsv"
    threads: 1  # see the top of this file
    priority: 20  # the longest one-thread chain of the run: keep it moving, others fill the other core
    resources:
        mem_mb=DRIFT["mem_mb"],
        gpu=1,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/drift/align.py"


rule drift_snip:
    input:
        model=DRIFT_START,
        data=DATA,
    output:
        # neuron scores only (the per-weight scores |W|·Σ|∇W| never leave memory); only
        # drift_groups reads them, so they are removed once the groups exist
        scores=temp(f"{DRIFT_ROOT}/snip_neuron_scores_{{snip_set}}.npz"),
    params:
        settings=stage_settings("snip", DRIFT),
        device=DRIFT_DEVICE,
        offline=LM["offline"],
        seed=config["seed"],
    log:
        "results/logs/drift/snip_{snip_set}.log",
    benchmark:
        "results/benchmarks/drift/snip_{snip_set}.tsv"
    threads: 1  # see the top of this file: the safety and utility jobs run side by side
    priority: 20  # the longest one-thread chain of the run: keep it moving, others fill the other core
    resources:
        mem_mb=DRIFT["mem_mb"],
        gpu=1,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/drift/snip.py"


rule drift_groups:
    input:
        safety=snip_scores_path("safety"),
        utility=snip_scores_path("utility"),
    output:
        **DRIFT_GROUP_FILES,
        summary=GROUP_SUMMARY,
    params:
        settings=stage_settings("groups", DRIFT),
        seed=config["seed"],
    log:
        "results/logs/drift/groups.log",
    benchmark:
        "results/benchmarks/drift/groups.tsv"
    threads: 1  # sorting score tables: well under a second
    priority: 20  # the longest one-thread chain of the run: keep it moving, others fill the other core
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/drift/groups.py"


rule drift_finetune:
    input:
        model=DRIFT_START,
        data=DATA,
        groups=list(DRIFT_GROUP_FILES.values()),
        # the held-out refusal after alignment stands for the fine-tuning's start (the same model)
        alignment=ALIGNMENT if DRIFT["align"] else [],
    output:
        log=DRIFT_LOG,
        final=FINAL_DRIFT,
        finetune=FINETUNE,
    params:
        settings=stage_settings("finetune", DRIFT),
        device=DRIFT_DEVICE,
        offline=LM["offline"],
        seed=config["seed"],
    log:
        "results/logs/drift/finetune.log",
    benchmark:
        "results/benchmarks/drift/finetune.tsv"
    threads: 1  # see the top of this file
    priority: 20  # the longest one-thread chain of the run: keep it moving, others fill the other core
    resources:
        mem_mb=DRIFT["mem_mb"],
        gpu=1,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/drift/finetune.py"


rule drift_analysis:
    input:
        log=DRIFT_LOG,
        final=FINAL_DRIFT,
        finetune=FINETUNE,
        summary=GROUP_SUMMARY,
        alignment=ALIGNMENT if DRIFT["align"] else [],
    output:
        statistics=STATISTICS,
        criteria=DRIFT_CRITERIA,
        text=REPORT,
        **{name: report(path, caption=f"../report/drift/{name}.rst", **DRIFT_FIGURE) for name, path in DRIFT_FIGURES.items()},
    params:
        settings=stage_settings("analysis", DRIFT),
        study=DRIFT_STUDY,
        seed=config["seed"],
    log:
        "results/logs/drift/analysis.log",
    benchmark:
        "results/benchmarks/drift/analysis.tsv"
    threads: 1  # bootstrap over a few thousand neurons and three figures
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/drift/analysis.py"


rule drift_tables:
    input:
        statistics=STATISTICS,
        groups=GROUP_SUMMARY,
    output:
        tables=report(TABLES, caption="../report/drift/tables.rst", **DRIFT_TABLE),
    log:
        "results/logs/drift/tables.log",
    benchmark:
        "results/benchmarks/drift/tables.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/drift/tables.py"
