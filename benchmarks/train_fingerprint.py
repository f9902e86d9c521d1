"""Fingerprint of a short, fixed training run of the reference HRN: did a change keep training
bit-identical?

Trains the first --tasks tasks of Pairwise-MNIST (--samples training images each, in file
order, batch 16, seed 0, one thread), as `hrn-hw train` would per batch (task loss + residue
L1, Adam), and prints the sha256 of every batch's loss (float32 bits) and of the final state
(every tensor of the state dict, bytes in key order). Two source trees with the same
fingerprints trained alike, batch for batch and tensor for tensor. --batches N stops after N
batches of the first task (to count the instructions of a fixed amount of training, e.g. under
`valgrind --tool=callgrind`, against a run with --batches 0).

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old .venv/bin/python /tmp/old/benchmarks/train_fingerprint.py   # if it has it
    PYTHONPATH=. .venv/bin/python benchmarks/train_fingerprint.py --tree /tmp/old   # or this
    PYTHONPATH=. .venv/bin/python benchmarks/train_fingerprint.py
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]),
                    help="source tree whose hrn_hw/ (and, before 2026-12-06, reference/) trains (default: this one)")
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--samples", type=int, default=3000, help="training images per task")
    ap.add_argument("--batches", type=int, default=None, help="stop after this many batches")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.tree)

    import numpy as np
    import torch
    import torch.nn.functional as F

    from hrn_hw.config import builtin_config_path, load_config
    from hrn_hw.scenarios import load_tasks, scenario_tasks
    from hrn_hw.train import make_optimizer
    try:
        from hrn_hw.reference.hrn import HRN
    except ImportError:               # a tree from before the reference moved into hrn_hw
        from reference.hrn import HRN

    torch.set_num_threads(1)
    try:
        cfg = load_config(builtin_config_path("pairwise-mnist"), profile="paper")
    except TypeError:                 # a tree from before profiles trains the paper's algorithms
        cfg = load_config(builtin_config_path("pairwise-mnist"))
    tasks = load_tasks(scenario_tasks("pairwise-mnist")[:args.tasks], None, args.samples, 0)
    torch.manual_seed(0)
    model = HRN(cfg, seed=0)
    losses: list[float] = []
    for t, task in enumerate(tasks):
        model.add_head(len(task.spec.classes))
        opt = make_optimizer(model, t, cfg)
        model.train()
        for start in range(0, len(task.train_x), 16):
            if args.batches is not None and len(losses) >= args.batches:
                break
            xb = torch.from_numpy(task.train_x[start:start + 16])
            yb = torch.from_numpy(task.train_y[start:start + 16])
            logits, routing = model(xb, t)
            loss = F.cross_entropy(logits, yb) + cfg.hrn.residue_l1 * routing.residue_l1.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    state = hashlib.sha256()
    for key, value in model.state_dict().items():
        state.update(key.encode())
        state.update(value.detach().cpu().contiguous().numpy().tobytes())
    loss_bits = hashlib.sha256(np.asarray(losses, dtype=np.float32).tobytes()).hexdigest()
    print(f"tree {args.tree}: {len(losses)} batches, last loss {losses[-1] if losses else float('nan'):.6f}")
    print(f"losses sha256 {loss_bits[:16]}  state sha256 {state.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
