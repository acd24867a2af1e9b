"""Measure the unmodified model once: the step-0 point of every retrofit method."""
from weightlab.io import read_json, write_json
from weightlab.lm import LM_PACKAGES, hub_environment, load_backbone
from weightlab.provenance import provenance
from weightlab.retrofit import evaluate, validation_blocks
from weightlab.runtime import configure, resolve_device, seed_everything
from weightlab.script import logged

with logged(snakemake.log[0]) as log:
    params, settings = snakemake.params, snakemake.params.settings
    hub_environment(params.offline)
    configure(snakemake.threads)
    seed_everything(params.seed)
    device = resolve_device(params.device)
    backbone = load_backbone(snakemake.input.backbone, device)
    blocks = validation_blocks(backbone.tokenizer, read_json(snakemake.input.text), settings["corpus"],
                               settings["seq_len"], settings["eval_sequences"])
    initial = evaluate(backbone.model, blocks, device, detail=True)
    log.info("baseline: loss %.4f, perplexity %.2f, FFN Gram conditioning %.1f",
             initial["loss"], initial["perplexity"], initial["conditioning"])
    write_json(snakemake.output[0], {
        "model": backbone.name, "initial": initial,
        "data": {"corpus": settings["corpus"], "seq_len": settings["seq_len"], "validation_blocks": len(blocks)},
        "provenance": provenance(settings, params.seed, LM_PACKAGES),
    })
