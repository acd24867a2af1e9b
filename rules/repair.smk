# Study 2: provable repair of an AlexNet (shared/sources/001_*.txt).
# train the base model -> evaluate it -> edit sets (type x class x size) -> LP repair and
# evaluation of each -> experiment_data.csv -> figures.

from weightlab.repair.editsets import experiment_names

REPAIR = config["repair"]
REPAIR_EXPERIMENTS = experiment_names(REPAIR["set_types"], REPAIR["target_classes"], REPAIR["set_sizes"])
# Where an output shows in the HTML report (snakemake --report).
REPAIR_FIGURE = dict(category="Provable repair", subcategory="Figures")
REPAIR_TABLE = dict(category="Provable repair", subcategory="Key tables")
REPAIR_OUTPUTS = [
    "results/repair/alexnet_base.pt",
    "results/repair/base_evaluation.json",
    "results/repair/figures/confusion_matrix.png",
    "results/repair/experiment_data.csv",
    "results/repair/summary.json",
    "results/repair/criteria.json",
    "results/repair/figures/accuracy_vs_size.png",
    "results/repair/figures/runtime_vs_size.png",
    "results/repair/figures/drawdown.png",
    "results/repair/tables.html",
]


rule repair:
    input:
        REPAIR_OUTPUTS,
    localrule: True


wildcard_constraints:
    edit_type="misclassified|class_homogeneous_correct|class_homogeneous_incorrect",
    edit_target="all|c[0-9]+",
    edit_size="[0-9]+",


rule repair_train:
    input:
        images="results/data/images.npz",
    output:
        checkpoint="results/repair/alexnet_base.pt",
        history="results/repair/base_training.json",
    params:
        model=REPAIR["model"],
        train=REPAIR["train"],
        monitor_size=REPAIR["monitor_size"],
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/repair/train.log",
    benchmark:
        "results/benchmarks/repair/train.tsv"
    threads: config["threads"]["train"]
    resources: gpu=1
    conda:
        "../envs/repair.yaml"
    script:
        "../workflow_scripts/repair/train.py"


rule repair_evaluate_base:
    input:
        images="results/data/images.npz",
        checkpoint="results/repair/alexnet_base.pt",
    output:
        evaluation="results/repair/base_evaluation.json",
        predictions="results/repair/base_predictions.npz",
        confusion=report("results/repair/figures/confusion_matrix.png", caption="../report/repair/confusion.rst", **REPAIR_FIGURE),
    params:
        device=config["device"],
    log:
        "results/logs/repair/evaluate_base.log",
    benchmark:
        "results/benchmarks/repair/evaluate_base.tsv"
    threads: config["threads"]["eval"]
    resources: mem_mb=1500, gpu=1
    conda:
        "../envs/repair.yaml"
    script:
        "../workflow_scripts/repair/evaluate_base.py"


rule repair_editset:
    input:
        predictions="results/repair/base_predictions.npz",
    output:
        "results/repair/editsets/{edit_type}-{edit_target}-n{edit_size}.json",
    params:
        seed=config["seed"],
    log:
        "results/logs/repair/editset/{edit_type}-{edit_target}-n{edit_size}.log",
    benchmark:
        "results/benchmarks/repair/editset/{edit_type}-{edit_target}-n{edit_size}.tsv"
    resources: mem_mb=500
    conda:
        "../envs/repair.yaml"
    script:
        "../workflow_scripts/repair/editset.py"


rule repair_run:
    input:
        images="results/data/images.npz",
        checkpoint="results/repair/alexnet_base.pt",
        predictions="results/repair/base_predictions.npz",
        editset="results/repair/editsets/{edit_type}-{edit_target}-n{edit_size}.json",
    output:
        directory("results/repair/runs/{edit_type}-{edit_target}-n{edit_size}"),
    params:
        lp=REPAIR["lp"],
        device=config["device"],
    log:
        "results/logs/repair/run/{edit_type}-{edit_target}-n{edit_size}.log",
    benchmark:
        "results/benchmarks/repair/run/{edit_type}-{edit_target}-n{edit_size}.tsv"
    threads: config["threads"]["eval"]
    resources: mem_mb=1500
    conda:
        "../envs/repair.yaml"
    script:
        "../workflow_scripts/repair/run.py"


rule repair_grid:
    input:
        runs=expand("results/repair/runs/{experiment}", experiment=REPAIR_EXPERIMENTS),
        base="results/repair/base_evaluation.json",
    output:
        csv="results/repair/experiment_data.csv",
        summary="results/repair/summary.json",
        criteria="results/repair/criteria.json",
    params:
        repair=REPAIR,
        seed=config["seed"],
    log:
        "results/logs/repair/grid.log",
    benchmark:
        "results/benchmarks/repair/grid.tsv"
    conda:
        "../envs/repair.yaml"
    script:
        "../workflow_scripts/repair/grid.py"


rule repair_figures:
    input:
        summary="results/repair/summary.json",
    output:
        accuracy=report("results/repair/figures/accuracy_vs_size.png", caption="../report/repair/accuracy.rst", **REPAIR_FIGURE),
        runtime=report("results/repair/figures/runtime_vs_size.png", caption="../report/repair/runtime.rst", **REPAIR_FIGURE),
        drawdown=report("results/repair/figures/drawdown.png", caption="../report/repair/drawdown.rst", **REPAIR_FIGURE),
    log:
        "results/logs/repair/figures.log",
    benchmark:
        "results/benchmarks/repair/figures.tsv"
    conda:
        "../envs/repair.yaml"
    script:
        "../workflow_scripts/repair/figures.py"


rule repair_tables:
    input:
        summary="results/repair/summary.json",
    output:
        tables=report("results/repair/tables.html", caption="../report/repair/tables.rst", **REPAIR_TABLE),
    log:
        "results/logs/repair/tables.log",
    benchmark:
        "results/benchmarks/repair/tables.tsv"
    conda:
        "../envs/repair.yaml"
    script:
        "../workflow_scripts/repair/tables.py"
