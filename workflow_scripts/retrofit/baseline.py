"""Measure the unmodified model once: the step-0 point of every retrofit method."""
from weightlab.io import read_json, write_json
from weightlab.lm import LM_PACKAGES
from weightlab.lm.backbone import load_backbone
from weightlab.provenance import provenance
from weightlab.retrofit.data import validation_blocks
from weightlab.retrofit.training import measure
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params, settings = step.params, step.params.data
    step.seed()
    device = step.device
    backbone = load_backbone(step.input.backbone, device)
    blocks = validation_blocks(backbone.tokenizer, read_json(step.input.text), settings["corpus"],
                               settings["seq_len"], settings["eval_sequences"])
    initial = measure(backbone.model, blocks, device, detail=True)
    step.log.info("baseline: loss %.4f, perplexity %.2f, FFN Gram conditioning %.1f",
                  initial["loss"], initial["perplexity"], initial["conditioning"])
    write_json(step.output[0], {
        "model": backbone.name, "initial": initial,
        "data": {"corpus": settings["corpus"], "seq_len": settings["seq_len"], "validation_blocks": len(blocks)},
        "provenance": provenance(settings, params.seed, LM_PACKAGES),
    })
