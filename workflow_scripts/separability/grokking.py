"""Experiment C: train one condition (high_wd, no_wd) of modular-addition grokking for one seed."""
from weightlab.checkpoints import save_checkpoint
from weightlab.io import write_json
from weightlab.script import rule_step
from weightlab.separability.auditlog import AuditLog
from weightlab.separability.grokking import GrokkingConfig, train_grokking

with rule_step(snakemake) as step:
    condition, seed, settings = step.wildcards.condition, int(step.params.seed), dict(step.params.settings)
    cfg = GrokkingConfig.from_settings(settings)
    step.seed(seed)
    step.log.info("exp c %s seed %d: p=%d, train fraction %.2f, %d full-batch steps, lr %g, device %s",
                  condition, seed, cfg.p, cfg.train_fraction, cfg.steps, cfg.lr, step.device)
    log = AuditLog("c", condition, seed, settings)
    model, summary = train_grokking(cfg, condition, seed, step.device, log, desc=f"exp_c {condition} seed {seed}")
    step.log.info("exp c %s seed %d: test accuracy %.3f -> %.3f, transition step %s (train fit at %s), Spearman rho %s "
                  "(%d points%s), A_param %.2f -> peak %.2f -> %.2f, key frequencies %s (%.0f%% of the embedding's energy)",
                  condition, seed, summary["initial_test_accuracy"], summary["final_test_accuracy"], summary["transition_step"],
                  summary["train_fit_step"], summary["spearman_rho"], summary["rho_points"],
                  f": {summary['rho_reason']}" if summary["rho_reason"] else "", summary["A_param_initial"],
                  summary["A_param_peak"], summary["A_param_final"], summary["key_frequencies"],
                  100 * (summary["key_frequency_share"] or 0.0))
    save_checkpoint(step.output.checkpoint, model, "toy_transformer", cfg.model_config().as_dict(), {
        "experiment": "c", "condition": condition, "seed": seed, "step": cfg.steps, "weight_decay": summary["weight_decay"],
        "p": cfg.p, "task": "(a + b) mod p; tokens [a, b, p]; logits at the last position",
    })
    write_json(step.output.log, log.document(cfg.steps, **summary))
