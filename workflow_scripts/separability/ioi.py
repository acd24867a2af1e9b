"""Experiment B, one condition (baseline, critical, random): ablate, measure compensation and self-repair."""
from weightlab.errors import InputError
from weightlab.io import read_json, write_json
from weightlab.lm import LM_PACKAGES
from weightlab.lm.backbone import load_backbone, load_bridge
from weightlab.script import rule_step
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.ioi import run_condition
from weightlab.separability.prompts import IOIDataset

with rule_step(snakemake) as step:
    condition, settings, seed = step.wildcards.condition, step.params.settings, step.params.seed
    step.seed()
    backbone = load_backbone(step.input.backbone, step.device)
    heads = read_json(step.input.heads)
    if heads["model"] != backbone.name:
        raise InputError(f"{step.input.heads} was made with {heads['model']}, not {backbone.name}; re-run rule separability_ioi_heads.")
    bridge = load_bridge(backbone)
    dataset = IOIDataset.from_json(heads["prompts"], backbone.tokenizer)
    log = AuditLog("b", condition, seed, settings, LM_PACKAGES)
    metrics, summary = run_condition(bridge, dataset, condition, heads, settings, seed)
    log.record(0, **metrics)
    step.log.info("%s: heads %s (%s), logit diff %.3f -> %.3f, recovered fraction %s, self-repair %.3f; late residual norm at the "
                  "final position after / before %s (95%% interval %s)", condition, summary["ablated_heads"] or "none",
                  summary["ablation"], summary["clean_logit_diff"], summary["ablated_logit_diff"], summary["recovered_fraction"],
                  summary["decomposition"]["self_repair"], summary["late_final_position_norm_ratio"],
                  summary["late_final_position_norm_ratio_ci95"])
    write_json(step.output.log, log.document(0, model=backbone.name, **summary))
