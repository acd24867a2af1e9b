# Study 4: the conservation-of-separability audits (shared/sources/003_*.txt).
# A: constraint and clamps (control first: it calibrates the clamps) · B: IOI name-mover ablation
# and compensation (heads found first, on the model in use) · C: grokking · D: superposition;
# every (experiment, condition, seed) one rule run writing one audit log -> success criteria, figures.
# Names come from torch-free weightlab.separability.design: parsing never imports torch.
# LM (config["lm"]) is set in rules/lm.smk, included before this file.
from weightlab.lm import backbone_folder
from weightlab.separability.design import CLAMPS, CONDITIONS, audit_log_path, experiment_settings, study_audit_logs

SEP = config["separability"]
SEP_DEVICE = SEP["device"] or config["device"]
SEP_IOI_BACKBONE = backbone_folder(SEP["exp_b"]["model"] or LM["model"], key="separability.exp_b.model")
SEPARABILITY_LOGS = study_audit_logs(SEP)
SEPARABILITY_FIGURES = {
    "exp_a": "results/separability/figures/exp_a_dynamics.png",
    "exp_b": "results/separability/figures/exp_b_compensation.png",
    "exp_c_phase": "results/separability/figures/exp_c_phase.png",
    "exp_c_fourier": "results/separability/figures/exp_c_fourier.png",
    "exp_d": "results/separability/figures/exp_d_variance.png",
}
# Where an output shows in the HTML report (snakemake --report).
SEPARABILITY_FIGURE = dict(category="Separability audits", subcategory="Figures")
SEPARABILITY_TABLE = dict(category="Separability audits", subcategory="Key tables")
SEPARABILITY_OUTPUTS = [*SEPARABILITY_LOGS, "results/separability/success_criteria.json", "results/separability/criteria.json", *SEPARABILITY_FIGURES.values(),
                        "results/separability/tables.html"]


# `condition`: any experiment's condition; each rule's output names its experiment (exp_a_, ...).
wildcard_constraints:
    condition="|".join(sorted({c for conditions in CONDITIONS.values() for c in conditions})),
    seed=r"\d+",


rule separability:
    input:
        SEPARABILITY_OUTPUTS,
    localrule: True


rule separability_constraint:
    input:
        control=lambda wildcards: audit_log_path("a", "control", wildcards.seed) if wildcards.condition in CLAMPS else [],
    output:
        log="results/separability/audit_log_exp_a_{condition}_seed_{seed}.json",
        checkpoint="results/separability/checkpoints/exp_a_{condition}_seed_{seed}.pt",
    params:
        settings=experiment_settings("a", SEP),
        seed=lambda wildcards: int(wildcards.seed),
        device=SEP_DEVICE,
    log:
        "results/logs/separability/exp_a_{condition}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/separability/exp_a_{condition}_seed_{seed}.tsv"
    threads: 1  # a 2-layer, 4-head attention-only model: one thread each, two runs at once on two cores
    resources:
        mem_mb=1500,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/constraint.py"


rule separability_ioi_heads:
    input:
        backbone=SEP_IOI_BACKBONE,
    output:
        heads="results/separability/ioi_heads_seed_{seed}.json",
    params:
        settings=experiment_settings("b", SEP),
        seed=lambda wildcards: int(wildcards.seed),
        device=SEP_DEVICE,
        offline=LM["offline"],
    log:
        "results/logs/separability/ioi_heads_seed_{seed}.log",
    benchmark:
        "results/benchmarks/separability/ioi_heads_seed_{seed}.tsv"
    threads: config["threads"]["eval"]
    resources:
        mem_mb=3000,
        gpu=1,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/ioi_heads.py"


rule separability_ioi:
    input:
        backbone=SEP_IOI_BACKBONE,
        heads="results/separability/ioi_heads_seed_{seed}.json",
    output:
        log="results/separability/audit_log_exp_b_{condition}_seed_{seed}.json",
    params:
        settings=experiment_settings("b", SEP),
        seed=lambda wildcards: int(wildcards.seed),
        device=SEP_DEVICE,
        offline=LM["offline"],
    log:
        "results/logs/separability/exp_b_{condition}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/separability/exp_b_{condition}_seed_{seed}.tsv"
    threads: config["threads"]["eval"]
    resources:
        mem_mb=3000,
        gpu=1,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/ioi.py"


rule separability_grokking:
    output:
        log="results/separability/audit_log_exp_c_{condition}_seed_{seed}.json",
        checkpoint="results/separability/checkpoints/exp_c_{condition}_seed_{seed}.pt",
    params:
        settings=experiment_settings("c", SEP),
        seed=lambda wildcards: int(wildcards.seed),
        device=SEP_DEVICE,
    log:
        "results/logs/separability/exp_c_{condition}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/separability/exp_c_{condition}_seed_{seed}.tsv"
    threads: 1  # full-batch steps of a 1-layer model: one thread each, the two conditions side by side
    priority: 10  # the study's longest jobs: start them first so the short ones fill the other core
    resources:
        mem_mb=1500,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/grokking.py"


rule separability_superposition:
    output:
        log="results/separability/audit_log_exp_d_superposition_seed_{seed}.json",
    params:
        settings=experiment_settings("d", SEP),
        seed=lambda wildcards: int(wildcards.seed),
        device=SEP_DEVICE,
    log:
        "results/logs/separability/exp_d_superposition_seed_{seed}.log",
    benchmark:
        "results/benchmarks/separability/exp_d_superposition_seed_{seed}.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/superposition.py"


rule separability_criteria:
    input:
        logs=SEPARABILITY_LOGS,
    output:
        criteria="results/separability/success_criteria.json",
        records="results/separability/criteria.json",
    params:
        criteria=SEP["criteria"],
        separability=SEP,
        seed=config["seed"],
    log:
        "results/logs/separability/criteria.log",
    benchmark:
        "results/benchmarks/separability/criteria.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/criteria.py"


rule separability_figures:
    input:
        logs=SEPARABILITY_LOGS,  # the figures read the logs only: they draw beside the criteria, not after them
    output:
        **{name: report(path, caption=f"../report/separability/{name}.rst", **SEPARABILITY_FIGURE) for name, path in SEPARABILITY_FIGURES.items()},
    params:
        seed=config["seed"],
    log:
        "results/logs/separability/figures.log",
    benchmark:
        "results/benchmarks/separability/figures.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/figures.py"


rule separability_tables:
    input:
        criteria="results/separability/success_criteria.json",
    output:
        tables=report("results/separability/tables.html", caption="../report/separability/tables.rst", **SEPARABILITY_TABLE),
    log:
        "results/logs/separability/tables.log",
    benchmark:
        "results/benchmarks/separability/tables.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/separability/tables.py"
