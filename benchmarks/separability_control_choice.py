"""How experiment A's training settings are chosen: the control's held-out Ψ per seed, nothing else.

Trains only the control of `separability.exp_a` (config.yaml, overridden by KEY=VALUE arguments) for
each seed given, with the pipeline's data, data order, initialisation and learning-rate schedule
(`weightlab.separability.constraint`: `task_data`, `build_model`, `lr_factor`, the per-epoch
permutation from seed + 1) but without the audit log's observables, and prints Ψ every 250 steps.
The constraint and clamp conditions are never run here: the settings are chosen by the
precondition A1 (control ≥ 0.95 on every seed) and by cost alone.

    python benchmarks/separability_control_choice.py lr=0.01 warmup_steps=100 epochs=3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import yaml

from weightlab.separability.constraint import ConstraintConfig, build_model, evaluate, lr_factor, task_data


def control_accuracy(cfg: ConstraintConfig, seed: int, every: int = 250) -> list[tuple[int, float]]:
    """(step, held-out Ψ) every `every` steps and at the end of the control's training."""
    model = build_model(cfg, seed).train()
    train, heldout = task_data(cfg, seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
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
                model.train()
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE settings of separability.exp_a (YAML values)")
    args = parser.parse_args()
    with open("config.yaml") as handle:
        settings = yaml.safe_load(handle)["separability"]["exp_a"]
    settings.update({key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in args.overrides)})
    cfg = ConstraintConfig.from_settings(settings)
    torch.set_num_threads(1)
    for seed in args.seeds:
        start = time.process_time()
        curve = control_accuracy(cfg, seed)
        print(f"seed {seed}: lr {cfg.lr} {cfg.lr_schedule} warm-up {cfg.warmup_steps} batch {cfg.batch_size} "
              f"{cfg.total_steps} steps: final psi {curve[-1][1]:.3f} ({time.process_time() - start:.0f} CPU s); "
              + " ".join(f"{s}:{a:.3f}" for s, a in curve), flush=True)


if __name__ == "__main__":
    main()
