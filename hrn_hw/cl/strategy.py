"""The hooks every continual-learning method gives the one training loop (`hrn_hw.train.train`).

A `Strategy` owns one model with a head per task and says, per task t:

    build(in_shape)              a fresh model (under the caller's torch seed)
    begin_task(t, task, resuming) add task t's head (the HRN: its extra units first); the
                                  methods' own set-up (LwF/ELL: snapshot the model)
    trainable(t)                 the parameters task t's optimiser trains (other heads frozen
                                  where the method does not train them)
    batch_loss(x, y, t, oracle)  cross-entropy on head t + the method's own term; returns
                                  (loss, routes or None)
    end_task(t, task, device)    after task t's last epoch (EWC: Fisher and anchor; ELL: the
                                  autoencoder; the HRN: the basis lock)
    structure() / state()        plain data / tensors the checkpoint stores to rebuild the
                                  model (`rebuild`) and restore the method's state (`load_state`)

`METHOD_NAMES` lists the methods; their registry (name -> class) and `make_strategy` are in
`hrn_hw.cl.methods`, which imports every method's module (each imports this one for the base).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:              # (torch is imported where used: the CLI reads METHOD_NAMES cheaply)
    import torch
    import torch.nn as nn

    from hrn_hw.config import Config

METHOD_NAMES = ("hrn", "vc", "ewc", "lwf", "ell")


class Strategy:
    """A continual-learning method on the shared loop; subclasses fill in the hooks."""

    name = ""

    def __init__(self, cfg: Config, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.model: nn.Module | None = None

    # ---- the model -----------------------------------------------------------------------

    def build(self, in_shape: tuple) -> nn.Module:
        """A fresh model with no heads, for inputs of shape [C, H, W]."""
        raise NotImplementedError

    def structure(self) -> dict:
        """Plain data that `rebuild` needs besides the config, seed and head sizes."""
        return {}

    def rebuild(self, structure: dict, head_sizes: list[int]) -> nn.Module:
        """The model of a checkpoint (before its weights are loaded)."""
        raise NotImplementedError

    @property
    def num_units(self) -> int:
        """Units whose visits the loop counts (the HRN's; 0 elsewhere)."""
        return 0

    def to(self, device) -> "Strategy":
        """Move the model and the method's state to `device`."""
        self.model.to(device)
        return self

    # ---- the task hooks ------------------------------------------------------------------

    def begin_task(self, t: int, task, resuming: bool) -> None:
        """Before task t's first epoch (`resuming`: the model already has the task's head)."""
        if not resuming:
            self.model.add_head(task.spec.num_classes)

    def trainable(self, t: int) -> list:
        """Task t's optimiser's parameters: the encoder and head t; the other heads frozen."""
        for k, head in enumerate(self.model.heads):
            head.requires_grad_(k == t)
        return list(self.model.encoder_parameters()) + list(self.model.heads[t].parameters())

    def begin_epoch(self, t: int, epoch: int, epochs: int) -> None:
        """Before epoch `epoch` (0-based) of the task's `epochs`."""

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor, t: int, oracle: bool = False):
        """(loss, routes [B, d] or None) of one training batch of task t."""
        raise NotImplementedError

    def end_task(self, t: int, task, device: str) -> None:
        """After task t's last epoch, before its evaluation."""

    # ---- the method's state --------------------------------------------------------------

    def state(self) -> dict:
        """The method's own state for the checkpoint: tensors and plain data only."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore `state()` (raises KeyError/TypeError/ValueError/RuntimeError when it does not fit)."""
        if state:
            raise ValueError(f"method {self.name!r} keeps no state, got {sorted(state)}")


def build_optimizer(params: list, cfg: Config) -> torch.optim.Optimizer:
    """The config's optimiser over `params` (every method's tasks, and ELL's autoencoders)."""
    import torch

    if cfg.training.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.training.lr, foreach=True)
    return torch.optim.SGD(params, lr=cfg.training.lr, momentum=0.9, foreach=True)


def sample_rows(n: int, count: int, seed: int, t: int, salt: int) -> np.ndarray:
    """`count` distinct rows of n (all of them, in order, when count >= n), drawn from the
    stream (seed, task, salt): the same rows in a resumed run."""
    if count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, t, salt]).choice(n, size=count, replace=False))
