# The language-model backbone and the text corpora every LM study shares (retrofit, IOI audit,
# safety drift). Other rules take backbone_folder(name) of lm.model (LM["model"]) or of another
# packaged name or hub id, and "results/lm/text.json", as inputs; LM is config["lm"].
from weightlab.lm import model_name

LM = config["lm"]


wildcard_constraints:
    backbone=r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}",  # a safe name (weightlab.lm.SAFE_MODEL_NAME)


rule lm_backbone:
    output:
        directory("results/lm/models/{backbone}"),
    params:
        name=lambda wildcards: model_name(wildcards.backbone),
        offline=LM["offline"],
    log:
        "results/logs/lm/backbone/{backbone}.log",
    benchmark:
        "results/benchmarks/lm/backbone/{backbone}.tsv"
    threads: config["threads"]["eval"]
    priority: 30  # retrofit, the IOI audit and the drift chain all wait for it
    resources: mem_mb=1500
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/lm/backbone.py"


rule lm_text:
    output:
        "results/lm/text.json",
    params:
        text=LM["text"],
        seed=config["seed"],
    log:
        "results/logs/lm/text.log",
    benchmark:
        "results/benchmarks/lm/text.tsv"
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/lm/text.py"
