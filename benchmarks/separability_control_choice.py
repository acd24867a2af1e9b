"""How experiment A's training settings are chosen: the control's held-out Ψ per seed, nothing else.

Trains only the control of `separability.exp_a` (config.yaml, overridden by KEY=VALUE arguments) for
each seed given, with the pipeline's data, data order, initialisation, optimiser and learning-rate
schedule (`weightlab.separability.constraint`: `task_data`, `build_model`, `make_optimiser`,
`lr_factor`, the per-epoch permutation from seed + 1) but without the audit log's observables, and
prints Ψ every `--every` steps and the CPU seconds of each seed. The constraint and clamp conditions
are never run here: the settings are chosen by the precondition A1 (control ≥ 0.95 on every seed)
and by cost alone. ``--give-up STEP PSI`` stops a setting (every remaining seed) as soon as a seed's
Ψ at STEP is below PSI: A1 needs every seed, so one stuck seed rules the setting out.

    python benchmarks/separability_control_choice.py lr=0.01 warmup_steps=100 epochs=3 --seeds 2 0 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import yaml

from weightlab.separability.constraint import (
    ConstraintConfig,
    build_model,
    evaluate,
    lr_factor,
    make_optimiser,
    task_data,
)


def control_accuracy(cfg: ConstraintConfig, seed: int, every: int = 250,
                     give_up: tuple[int, float] | None = None) -> list[tuple[int, float]]:
    """(step, held-out Ψ) every `every` steps and at the end of the control's training (or at the
    give-up step, if Ψ is below the give-up level there)."""
    model = build_model(cfg, seed).train()
    train, heldout = task_data(cfg, seed)
    optimiser = make_optimiser(cfg, model)
    total = cfg.total_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda t: lr_factor(t, total, cfg.lr_schedule, cfg.warmup_steps))
    order = torch.Generator().manual_seed(seed + 1)
    curve, step = [], 0
    for _ in range(cfg.epochs):
        batches = torch.randperm(cfg.n_train, generator=order)[: cfg.steps_per_epoch * cfg.batch_size]
        for rows in batches.view(cfg.steps_per_epoch, cfg.batch_size):
            tokens = train.tokens[rows]
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            step += 1
            if step % every == 0 or step == total:
                model.eval()
                curve.append((step, evaluate(model, heldout, (), cfg.batch_size)["psi_accuracy"]))
                print(f"  seed {seed} step {step}: psi {curve[-1][1]:.3f}", flush=True)
                model.train()
                if give_up is not None and step == give_up[0] and curve[-1][1] < give_up[1]:
                    return curve
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--every", type=int, default=250, help="steps between held-out evaluations")
    parser.add_argument("--give-up", type=float, nargs=2, metavar=("STEP", "PSI"), default=None,
                        help="stop the setting when a seed's Ψ at STEP (a multiple of --every) is below PSI")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE settings of separability.exp_a (YAML values)")
    args = parser.parse_args()
    with open("config.yaml") as handle:
        settings = yaml.safe_load(handle)["separability"]["exp_a"]
    settings.update({key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in args.overrides)})
    cfg = ConstraintConfig.from_settings(settings)
    give_up = (int(args.give_up[0]), args.give_up[1]) if args.give_up else None
    torch.set_num_threads(1)
    print(" ".join(args.overrides) or "config.yaml defaults", flush=True)
    for seed in args.seeds:
        start = time.process_time()
        curve = control_accuracy(cfg, seed, args.every, give_up)
        stopped = give_up is not None and curve[-1][0] >= give_up[0] and dict(curve).get(give_up[0], 1.0) < give_up[1]
        print(f"seed {seed}: {cfg.total_steps} steps: {f'gave up at {curve[-1][0]}:' if stopped else 'final'} psi {curve[-1][1]:.3f} "
              f"({time.process_time() - start:.0f} CPU s); " + " ".join(f"{s}:{a:.3f}" for s, a in curve), flush=True)
        if stopped:
            break


if __name__ == "__main__":
    main()
