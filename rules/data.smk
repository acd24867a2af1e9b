# The image data set every image study shares, converted once to 32x32 uint8 arrays.


rule data_images:
    output:
        "results/data/images.npz",
    params:
        data=config["data"],
        seed=config["seed"],
    log:
        "results/logs/data/images.log",
    benchmark:
        "results/benchmarks/data/images.tsv"
    conda:
        "../envs/vision.yaml"
    script:
        "../workflow_scripts/data/images.py"
