"""Make the (not safety-tuned) model refuse: LoRA on harmful prompts paired with refusals mixed
with utility pairs, merged into the weights; held-out refusal rates before and after."""
import time

import torch

from weightlab.drift.lora import LoraSettings, RefusalProbe, TrainSettings, align_safety, save_model_folder, settings_record
from weightlab.drift.settings import ModelSettings, RefusalSettings
from weightlab.io import read_json, write_json
from weightlab.lm import LM_PACKAGES
from weightlab.lm.backbone import load_backbone
from weightlab.lm.precision import resolve_precision
from weightlab.lm.throughput import training_rate
from weightlab.provenance import provenance
from weightlab.script import rule_step

with rule_step(snakemake) as step:
    params, settings = step.params, step.params.settings
    step.seed()
    data = read_json(step.input.data)
    run, refusal, lora = ModelSettings.from_settings(settings), RefusalSettings.from_settings(settings), LoraSettings.from_settings(settings)
    train = TrainSettings.from_settings({**settings.get("alignment", {}), "max_length": run.max_length, "precision": run.precision},
                                        "drift.alignment")
    backbone = load_backbone(step.input.backbone, step.device, getattr(torch, run.dtype))
    probe = RefusalProbe.from_data(data, refusal.max_new_tokens, refusal.batch_size, keep_answers=3, precision=run.precision)
    clock = {"start": time.perf_counter()}
    before = probe(backbone.model, backbone.tokenizer) if refusal.before_alignment else {}
    clock["before"] = time.perf_counter()
    if before:
        step.log.info("refusal before alignment: %s", {k: v["rate"] for k, v in before.items()})
    merged, history = align_safety(backbone.model, backbone.tokenizer, data["align"], lora, train, params.seed)
    clock["train"] = time.perf_counter()
    after = probe(merged, backbone.tokenizer)
    clock["after"] = time.perf_counter()
    step.log.info("refusal after alignment (%d steps, loss %.3f -> %.3f): %s", len(history), history[0]["loss"],
                  history[-1]["loss"], {k: v["rate"] for k, v in after.items()})
    rate = training_rate(merged, history, "adapter", resolve_precision(run.precision, step.device.type), step.device)
    step.log.info("LoRA training steps: %s", rate.describe())
    block = provenance(settings, params.seed, (*LM_PACKAGES, "peft"))
    save_model_folder(merged, backbone.tokenizer, step.output.model, backbone.name,
                      {"aligned": True, "base_model": backbone.name, "provenance": block})
    write_json(step.output.alignment, {
        "model": backbone.name, "before": before, "after": after, "examples": len(data["align"]),
        **settings_record(lora, train), "history": history, "throughput": rate.as_dict(),
        "seconds": {"refusal_before": clock["before"] - clock["start"], "training": clock["train"] - clock["before"],
                    "refusal_after": clock["after"] - clock["train"]},
        "provenance": block,
    })
