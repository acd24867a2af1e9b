# Study 1: Git Re-Basin under spurious features (shared/sources/000_*.txt).
# environments -> train A/R models -> verify mechanisms (SRS) -> align -> interpolate -> barriers.


rule rebasin_environments:
    input:
        "results/data/images.npz",
    output:
        "results/rebasin/environments.npz",
    params:
        patch=REBASIN["patch"],
        seed=config["seed"],
    log:
        "results/logs/rebasin_environments.log",
    benchmark:
        "results/benchmarks/rebasin_environments.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_environments.py"


rule rebasin_preview:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
    output:
        report(
            "results/rebasin/environments_preview.png",
            caption="../report/rebasin_environments.rst",
            category="Re-Basin",
        ),
    params:
        patch=REBASIN["patch"],
    log:
        "results/logs/rebasin_preview.log",
    benchmark:
        "results/benchmarks/rebasin_preview.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_preview.py"


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
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/rebasin_train/{model}.log",
    benchmark:
        "results/benchmarks/rebasin_train/{model}.tsv"
    threads: config["threads"]["train"]
    resources:
        mem_mb=6000,
        gpu=1,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_train.py"


rule rebasin_training_curves:
    input:
        expand("results/rebasin/training/{model}.json", model=REBASIN_MODELS),
    output:
        report(
            "results/rebasin/figures/training_curves.png",
            caption="../report/rebasin_training_curves.rst",
            category="Re-Basin",
        ),
    log:
        "results/logs/rebasin_training_curves.log",
    benchmark:
        "results/benchmarks/rebasin_training_curves.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_training_curves.py"


rule rebasin_verify:
    input:
        images="results/data/images.npz",
        environments="results/rebasin/environments.npz",
        checkpoints=expand("results/checkpoints/model_{model}.pt", model=REBASIN_MODELS),
    output:
        "results/rebasin/srs.json",
    params:
        models=REBASIN_MODELS,
        patch=REBASIN["patch"],
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/rebasin_verify.log",
    benchmark:
        "results/benchmarks/rebasin_verify.tsv"
    threads: config["threads"]["eval"]
    resources:
        mem_mb=4000,
        gpu=1,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_verify.py"


rule rebasin_align:
    input:
        ref="results/checkpoints/model_{ref}.pt",
        other="results/checkpoints/model_{other}.pt",
    output:
        checkpoint="results/checkpoints/model_{other}_aligned_to_{ref}.pt",
        match="results/rebasin/alignment/{other}_to_{ref}.json",
    params:
        matching=REBASIN["matching"],
        seed=config["seed"],
    log:
        "results/logs/rebasin_align/{other}_to_{ref}.log",
    benchmark:
        "results/benchmarks/rebasin_align/{other}_to_{ref}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_align.py"


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
        alphas=rebasin_alphas(),
        interpolation=REBASIN["interpolation"],
        patch=REBASIN["patch"],
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/rebasin_interpolate/{ref}_{other}.log",
    benchmark:
        "results/benchmarks/rebasin_interpolate/{ref}_{other}.tsv"
    threads: config["threads"]["eval"]
    resources:
        mem_mb=4000,
        gpu=1,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_interpolate.py"


rule rebasin_barriers:
    input:
        rebasin_pair_files("results/rebasin/interpolation/{ref}_{other}.json"),
    output:
        "results/barriers.json",
    params:
        pairs=rebasin_pairs(),
        barrier_env=REBASIN["barrier_env"],
        rebasin=REBASIN,
        seed=config["seed"],
    log:
        "results/logs/rebasin_barriers.log",
    benchmark:
        "results/benchmarks/rebasin_barriers.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_barriers.py"


rule rebasin_summary:
    input:
        barriers="results/barriers.json",
        srs="results/rebasin/srs.json",
        matches=rebasin_pair_files("results/rebasin/alignment/{other}_to_{ref}.json"),
        histories=expand("results/rebasin/training/{model}.json", model=REBASIN_MODELS),
    output:
        summary="results/rebasin/summary.json",
        report="results/rebasin/final_report.json",
    params:
        rebasin=REBASIN,
        data=config["data"],
        seed=config["seed"],
    log:
        "results/logs/rebasin_summary.log",
    benchmark:
        "results/benchmarks/rebasin_summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_summary.py"


rule rebasin_figures:
    input:
        barriers="results/barriers.json",
        srs="results/rebasin/srs.json",
    output:
        barriers=report(
            "results/rebasin/figures/barrier_comparison.png",
            caption="../report/rebasin_barriers.rst",
            category="Re-Basin",
        ),
        paths=report(
            "results/rebasin/figures/interpolation_paths.png",
            caption="../report/rebasin_paths.rst",
            category="Re-Basin",
        ),
    log:
        "results/logs/rebasin_figures.log",
    benchmark:
        "results/benchmarks/rebasin_figures.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/rebasin_figures.py"
