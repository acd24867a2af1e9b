"""Experiment A: train one condition (control, constraint, naive or mean-preserving clamp) for one seed.

The clamp conditions read their targets from the trained control's audit log (``input.control``)."""
from weightlab.checkpoints import save_checkpoint
from weightlab.io import read_json, write_json
from weightlab.script import rule_step
from weightlab.separability.constraint import CLAMP_KINDS, ConstraintConfig, calibration_from_control, run_condition

with rule_step(snakemake) as step:
    condition, seed, settings = step.wildcards.condition, int(step.params.seed), dict(step.params.settings)
    cfg = ConstraintConfig.from_settings(settings)
    calibration = None
    if condition in CLAMP_KINDS:
        control = step.input.control
        calibration = calibration_from_control(read_json(control), seed, cfg.calibration_site, where=str(control))
    step.seed(seed)
    step.log.info("exp a %s seed %d: %d steps (%d epochs of %d), device %s", condition, seed, cfg.total_steps, cfg.epochs,
                  cfg.steps_per_epoch, step.device)
    run = run_condition(condition, cfg, seed, settings, calibration, step.device, desc=f"exp_a {condition} seed {seed}")
    summary = run.document["summary"]
    effect = summary["clamp_effect"] or {}
    step.log.info("exp a %s seed %d: psi_accuracy %.3f (1-layer fixed-offset ceiling %.3f), A_activation (last layer) %.3f, "
                  "A_param %.3f; frozen %s identical: %s (max change frozen %s, free %s), G_frozen %s; clamp %s, factor median %s, "
                  "acts %s", condition, seed, summary["final_psi_accuracy"], summary["fixed_offset_ceiling"]["accuracy"],
                  summary["final_A_activation"], summary["final_A_param"], summary["frozen_units"], summary["frozen_slices_identical"],
                  summary["max_abs_change_frozen"], summary["max_abs_change_free"], summary["G_frozen_final"], summary["clamp"],
                  effect.get("median"), effect.get("acts"))
    save_checkpoint(step.output.checkpoint, run.model, "toy_transformer", cfg.model_config().as_dict(), {
        "experiment": "a", "condition": condition, "seed": seed, "step": summary["total_steps"],
        "frozen_heads": summary["frozen_heads"], "clamp": summary["clamp"],
        "note": "the clamp is a forward hook, not part of the weights: re-apply it (summary.clamp) to reproduce the run's outputs",
    })
    write_json(step.output.log, run.document)
