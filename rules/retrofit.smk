# Study 3: geometry retrofit of a pretrained LM (shared/sources/002_*.txt).
# backbone + text -> baseline measurement -> standard / gram_only / geometry -> summary, figure.
# Names come from torch-free modules (weightlab.retrofit.design, weightlab.lm): parsing the
# workflow never imports torch or transformers.
from weightlab.lm import backbone_folder
from weightlab.retrofit.design import RUNS, method_settings

RETROFIT = config["retrofit"]
RETROFIT_BACKBONE = backbone_folder(RETROFIT["model"] or LM["model"], key="retrofit.model")
RETROFIT_DEVICE = RETROFIT["device"] or config["device"]
RETROFIT_RUN_FILES = expand("results/retrofit/{run}.json", run=RUNS)
# Where an output shows in the HTML report (snakemake --report).
RETROFIT_FIGURE = dict(category="Geometry retrofit", subcategory="Figures")
RETROFIT_TABLE = dict(category="Geometry retrofit", subcategory="Key tables")
RETROFIT_OUTPUTS = [
    *RETROFIT_RUN_FILES,
    "results/retrofit/summary.json",
    "results/retrofit/criteria.json",
    "results/retrofit/trajectories.png",
    "results/retrofit/tables.html",
]


wildcard_constraints:
    run="|".join(RUNS),


rule retrofit:
    input:
        RETROFIT_OUTPUTS,
    localrule: True


rule retrofit_baseline:
    input:
        backbone=RETROFIT_BACKBONE,
        text="results/lm/text.json",
    output:
        "results/retrofit/baseline.json",
    params:
        data=RETROFIT["data"],
        device=RETROFIT_DEVICE,
        offline=LM["offline"],
        seed=config["seed"],
    log:
        "results/logs/retrofit/baseline.log",
    benchmark:
        "results/benchmarks/retrofit/baseline.tsv"
    threads: config["threads"]["eval"]
    resources: mem_mb=3500, gpu=1
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/retrofit/baseline.py"


rule retrofit_train:
    input:
        backbone=RETROFIT_BACKBONE,
        text="results/lm/text.json",
        baseline="results/retrofit/baseline.json",
    output:
        "results/retrofit/{run}.json",
    params:
        method=lambda wildcards: RUNS[wildcards.run],
        data=RETROFIT["data"],
        train=lambda wildcards: method_settings(RUNS[wildcards.run], RETROFIT["train"]),
        device=RETROFIT_DEVICE,
        offline=LM["offline"],
        seed=config["seed"],
    log:
        "results/logs/retrofit/train/{run}.log",
    benchmark:
        "results/benchmarks/retrofit/train/{run}.tsv"
    threads: config["threads"]["train"]
    resources: mem_mb=6500, gpu=1
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/retrofit/train.py"


rule retrofit_summary:
    input:
        baseline="results/retrofit/baseline.json",
        runs=RETROFIT_RUN_FILES,
    output:
        summary="results/retrofit/summary.json",
        criteria="results/retrofit/criteria.json",
        figure=report("results/retrofit/trajectories.png", caption="../report/retrofit/trajectories.rst", **RETROFIT_FIGURE),
    params:
        retrofit=RETROFIT,
        seed=config["seed"],
    log:
        "results/logs/retrofit/summary.log",
    benchmark:
        "results/benchmarks/retrofit/summary.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/retrofit/summary.py"


rule retrofit_tables:
    input:
        summary="results/retrofit/summary.json",
    output:
        tables=report("results/retrofit/tables.html", caption="../report/retrofit/tables.rst", **RETROFIT_TABLE),
    log:
        "results/logs/retrofit/tables.log",
    benchmark:
        "results/benchmarks/retrofit/tables.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/retrofit/tables.py"
