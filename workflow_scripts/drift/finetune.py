"""LoRA fine-tuning on utility pairs from the start model, logging every drift_log_interval steps
the drift of every neuron group (effective weights, float32, vs the initial ones) and, every
refusal_interval steps, the held-out refusal rates."""
import torch

from weightlab.drift.groups import read_group
from weightlab.drift.lora import LoraSettings, RefusalProbe, TrainSettings, finetune_with_drift, settings_record
from weightlab.drift.report import save_final_drift, write_jsonl
from weightlab.drift.settings import LogSettings, ModelSettings, RefusalSettings, UnitSettings
from weightlab.drift.snip import module_units
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

    def progress(record: dict) -> None:
        refusal = {k: v["rate"] for k, v in record.get("refusal", {}).items()}
        step.log.info("step %d: loss %s, held-out loss %s, median L2 change %s%s", record["step"], record["train_loss"], record.get("heldout_loss"),
                      {g: f"{m['l2']['median']:.3g}" for g, m in record["groups"].items()}, f", refusal {refusal}" if refusal else "")

    data = read_json(step.input.data)
    run, refusal, logging = ModelSettings.from_settings(settings), RefusalSettings.from_settings(settings), LogSettings.from_settings(settings)
    lora, train, unit = LoraSettings.from_settings(settings), TrainSettings.from_settings(settings), UnitSettings.from_settings(settings).unit
    backbone = load_backbone(step.input.model, step.device, getattr(torch, run.dtype))
    groups = dict(read_group(path, module_units(backbone.model, unit)) for path in step.input.groups)
    probe = RefusalProbe.from_data(data, refusal.max_new_tokens, refusal.batch_size, precision=run.precision)
    # the aligned model is the start model: its held-out refusal after alignment is the start's
    after_alignment = read_json(step.input.alignment)["after"] if step.input.alignment else None
    start_refusal = after_alignment if after_alignment and probe.matches(after_alignment, step.device) else None
    step.log.info("refusal at the start: %s", "the alignment rule's measurement (same model)" if start_refusal else "probed here")
    step.log.info("fine-tuning %s on %d pairs for %d steps; LoRA on %s", backbone.name, len(data["finetune"]),
                  train.steps(len(data["finetune"])), ", ".join(lora.target_modules))
    result = finetune_with_drift(backbone.model, backbone.tokenizer, data["finetune"], groups, lora, train,
                                 logging.drift_log_interval, probe, logging.refusal_interval, params.seed, on_record=progress,
                                 heldout=data["heldout"], start_refusal=start_refusal, unit=unit, weight_sample=logging.weight_sample)
    rate = training_rate(backbone.model, result.history, "adapter", resolve_precision(run.precision, step.device.type), step.device)
    step.log.info("LoRA training steps: %s", rate.describe())
    write_jsonl(step.output.log, result.records)
    save_final_drift(step.output.final, result.final, result.modules, result.population)
    first, last = min(result.heldout), max(result.heldout)
    with_refusal = [r for r in result.records if "refusal" in r]
    write_json(step.output.finetune, {
        "model": backbone.name, "start": str(step.input.model), "examples": len(data["finetune"]),
        **settings_record(lora, train), "trained_modules": result.trained_modules, "excluded": result.excluded,
        "refusal_before": with_refusal[0]["refusal"], "refusal_after": with_refusal[-1]["refusal"],
        "heldout_losses": {"start": result.heldout[first].tolist(), "end": result.heldout[last].tolist(), "steps": [first, last]},
        "history": result.history, "throughput": rate.as_dict(), "provenance": provenance(settings, params.seed, (*LM_PACKAGES, "peft")),
    })
