"""Experiment D: train the toy models of superposition, find suppressor units by ablation, compare their variance."""
from weightlab.errors import InputError
from weightlab.io import write_json
from weightlab.script import rule_step
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.design import CONDITIONS
from weightlab.separability.superposition import SuperpositionConfig, run_superposition

with rule_step(snakemake) as step:
    condition = getattr(step.wildcards, "condition", CONDITIONS["d"][0])  # the rule may fix its one condition
    seed, settings = int(step.params.seed), step.params.settings
    if condition not in CONDITIONS["d"]:
        raise InputError(f"experiment d has no condition '{condition}'; it has {', '.join(CONDITIONS['d'])}.")
    cfg = SuperpositionConfig.from_settings(settings)
    generator = step.seed(seed)
    log = AuditLog("d", condition, seed, cfg.as_dict())
    summary = run_superposition(cfg, generator, seed, step.device, log)
    step.log.info("exp d seed %d: %d suppressors, %d clean units (ablation ratios %s); variance ratio %s, CI %s%s",
                  seed, summary["n_suppressors"], summary["n_clean"], summary["ablation_ratio_range"], summary["ratio"],
                  summary["ci95"], f" ({summary['note']})" if summary["note"] else "")
    write_json(step.output.log, log.document(cfg.train_steps, **summary))
