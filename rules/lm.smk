# The language-model backbone and the text corpora every LM study shares (retrofit, IOI audit,
# safety drift). Other rules take LM_BACKBONE (the folder of lm.model), or backbone_folder(name)
# for another packaged name or hub id, and "results/lm/text.json" as inputs.
from weightlab.lm import backbone_folder, model_name

LM = config["lm"]
LM_BACKBONE = backbone_folder(LM["model"], key="lm.model")


rule lm_backbone:
    output:
        directory("results/lm/models/{backbone}"),
    params:
        name=lambda wildcards: model_name(wildcards.backbone),
        offline=LM["offline"],
    wildcard_constraints:
        backbone=r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}",  # a safe name (weightlab.lm.SAFE_MODEL_NAME)
    log:
        "results/logs/lm_backbone/{backbone}.log",
    benchmark:
        "results/benchmarks/lm_backbone/{backbone}.tsv"
    threads: config["threads"]["eval"]
    resources:
        mem_mb=1500,
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
        "results/logs/lm_text.log",
    benchmark:
        "results/benchmarks/lm_text.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/lm.yaml"
    script:
        "../workflow_scripts/lm/text.py"
