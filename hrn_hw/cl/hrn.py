"""The hash-routed network as a strategy: the paper's training (Eq. 6 loss, Alg. 2-4 inside the
model's routing), with the extra units added before a task and the optional basis lock after it.

The same arithmetic, in the same order, as the loop before strategies existed:
`benchmarks/train_fingerprint.py` prints the same fingerprint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hrn_hw.cl.strategy import Strategy
from hrn_hw.profiles import PROFILE_SWITCHES
from hrn_hw.reference.hrn import HRN


class HrnStrategy(Strategy):
    """HRN: cross-entropy on head t + residue_l1 * mean L1 of the residues (Eq. 6)."""

    name = "hrn"

    @classmethod
    def around(cls, model: HRN) -> "HrnStrategy":
        """The strategy of an existing model."""
        strategy = cls(model.cfg, model.seed)
        strategy.model = model
        return strategy

    def build(self, in_shape: tuple | None = None) -> HRN:
        self.model = HRN(self.cfg, seed=self.seed)
        return self.model

    def structure(self) -> dict:
        return {"unit_groups": list(self.model.unit_groups),
                "hash_seeds": [int(s) for s in self.model.hash_seeds.tolist()]}

    def rebuild(self, structure: dict, head_sizes: list[int]) -> HRN:
        self.model = HRN(self.cfg, seed=self.seed, unit_groups=[int(g) for g in structure["unit_groups"]],
                         hash_seeds=[int(s) for s in structure["hash_seeds"]])
        for n in head_sizes:
            self.model.add_head(n)
        return self.model

    @property
    def num_units(self) -> int:
        return self.model.num_units

    def begin_task(self, t: int, task, resuming: bool) -> None:
        if not resuming:
            self.model.add_units(self.cfg.extra_units_before(t))
            self.model.add_head(task.spec.num_classes)

    def trainable(self, t: int) -> list:
        """Every unit but the protected ones (stable profile), and head t (the other heads frozen)."""
        for k, head in enumerate(self.model.heads):
            head.requires_grad_(k == t)
        protected = set(self.model.protected())
        for u, unit in enumerate(self.model.units):
            unit.requires_grad_(u not in protected)
        units = [p for p in self.model.units.parameters() if p.requires_grad]
        return units + list(self.model.heads[t].parameters())

    def begin_epoch(self, t: int, epoch: int, epochs: int) -> None:
        """With avoid_task_energy, the task's last epoch records its routed hashes' moment (the
        hashes of the features the task ends with, at one epoch's cost)."""
        self.model.pool.recording = bool(self.cfg.hrn.avoid_task_energy) and epoch == epochs - 1

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor, t: int, oracle: bool = False):
        logits, routing = self.model(x, t, oracle=oracle)
        loss = F.cross_entropy(logits, y) + self.cfg.hrn.residue_l1 * routing.residue_l1.mean()
        return loss, routing.routes

    def end_task(self, t: int, task, device: str) -> None:
        """Lock the units task t initialised (stable profile): bases frozen with basis_lock,
        weights with protect_units, later vectors kept off their span with orthogonal_bases and
        off the task's hash subspace with avoid_task_energy."""
        if any(getattr(self.cfg.hrn, switch) for switch in PROFILE_SWITCHES["stable"]):
            self.model.pool.close_task()
