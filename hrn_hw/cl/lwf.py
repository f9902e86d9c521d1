"""Learning without Forgetting (LwF, Li & Hoiem 2016) on the VC.

Before training task t > 0 the model is snapshotted (encoder and heads 0..t-1, eval mode,
frozen). On every batch x of task t, the snapshot's old heads give soft targets
p_k = softmax(old_k(f*(x)) / T), and

    loss = CE(head_t) + alpha * sum_{k < t} -sum_c p_k,c log softmax(head_k(f(x)) / T)_c

(the soft cross-entropy of Li & Hoiem, which differs from the KL divergence by the targets'
entropy, a constant: the same gradients; no T^2 factor, as in their paper). As in LwF, the old
heads train with the encoder (their outputs are held by the distillation). The snapshot is
dropped after the task. Defaults: alpha 1, T 2 (Li & Hoiem's lambda_o = 1 and T = 2; the
config's `methods.lwf`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from hrn_hw.cl.vc import VanillaCNN, VcStrategy


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of -sum_c targets_c log softmax(logits / T)_c."""
    return -(targets * F.log_softmax(logits / temperature, dim=1)).sum(1).mean()


def frozen_copy(model: VanillaCNN) -> VanillaCNN:
    """A copy of `model` in eval mode with no parameter trained."""
    snap = copy.deepcopy(model).eval()
    snap.requires_grad_(False)
    return snap


class LwfStrategy(VcStrategy):
    """The VC with distillation of the old heads' outputs (taken before the task) on new data."""

    name = "lwf"
    weight_key = "alpha"          # the distillation weight's key in the method's config section

    def __init__(self, cfg, seed: int = 0):
        super().__init__(cfg, seed)
        self.snapshot: VanillaCNN | None = None

    @property
    def distill_weight(self) -> float:
        return getattr(getattr(self.cfg.methods, self.name), self.weight_key)

    @property
    def temperature(self) -> float:
        return getattr(self.cfg.methods, self.name).temperature

    def begin_task(self, t: int, task, resuming: bool) -> None:
        if not resuming and t > 0:
            self.snapshot = frozen_copy(self.model)
        super().begin_task(t, task, resuming)

    def trainable(self, t: int) -> list:
        """The encoder and every head (old heads too, as in LwF)."""
        self.model.heads.requires_grad_(True)
        return list(self.model.encoder_parameters()) + list(self.model.heads.parameters())

    @torch.no_grad()
    def distill_targets(self, z_old: torch.Tensor) -> list[torch.Tensor]:
        """The snapshot's soft targets softmax(old_k(f*(x)) / T), one per old head, from the
        snapshot's features z_old = f*(x)."""
        return [F.softmax(head(z_old) / self.temperature, dim=1) for head in self.snapshot.heads]

    def penalty(self, x: torch.Tensor, z: torch.Tensor, t: int) -> torch.Tensor | None:
        if self.snapshot is None:
            return None
        with torch.no_grad():
            z_old = self.snapshot.encode(x)
        return self.old_terms(z, z_old)

    def old_terms(self, z: torch.Tensor, z_old: torch.Tensor) -> torch.Tensor:
        """The terms that hold the earlier tasks, from the features now (z) and the snapshot's."""
        targets = self.distill_targets(z_old)
        total = sum(soft_cross_entropy(self.model.heads[k](z), p, self.temperature) for k, p in enumerate(targets))
        return self.distill_weight * total

    def end_task(self, t: int, task, device: str) -> None:
        self.snapshot = None

    def to(self, device) -> "LwfStrategy":
        super().to(device)
        if self.snapshot is not None:
            self.snapshot.to(device)
        return self

    def state(self) -> dict:
        if self.snapshot is None:
            return {"snapshot": None}
        return {"snapshot": {"heads": [h.out.out_features for h in self.snapshot.heads],
                             "state_dict": self.snapshot.state_dict()}}

    def load_state(self, state: dict) -> None:
        snap = state["snapshot"]
        if snap is None:
            self.snapshot = None
            return
        model = VanillaCNN(self.cfg, None, self.model.in_shape)
        for n in snap["heads"]:
            model.add_head(int(n))
        model.load_state_dict(snap["state_dict"], strict=True)
        self.snapshot = frozen_copy(model.to(next(self.model.parameters()).device))
