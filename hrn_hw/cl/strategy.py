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

`METHODS` maps each method's name to its class (hrn, vc, ewc, lwf, ell); `make_strategy`
builds one by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hrn_hw.errors import HrnError

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


def _registry() -> dict:
    from hrn_hw.cl.ell import EllStrategy
    from hrn_hw.cl.ewc import EwcStrategy
    from hrn_hw.cl.hrn import HrnStrategy
    from hrn_hw.cl.lwf import LwfStrategy
    from hrn_hw.cl.vc import VcStrategy

    return {"hrn": HrnStrategy, "vc": VcStrategy, "ewc": EwcStrategy, "lwf": LwfStrategy, "ell": EllStrategy}


def __getattr__(name: str):
    """`METHODS`, the registry {name: Strategy class}, is made on first use (the methods'
    modules import this one for the base class)."""
    if name == "METHODS":
        global METHODS
        METHODS = _registry()
        assert tuple(METHODS) == METHOD_NAMES
        return METHODS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def strategy_class(name: str) -> type:
    """The class of method `name`; an unknown name is a one-line HrnError."""
    from hrn_hw.cl import strategy

    if name not in METHOD_NAMES:
        raise HrnError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return strategy.METHODS[name]


def make_strategy(name: str, cfg: Config, seed: int = 0) -> Strategy:
    """A strategy of method `name` for `cfg` and `seed` (no model yet)."""
    return strategy_class(name)(cfg, seed)


def as_strategy(learner) -> Strategy:
    """A Strategy as is; a bare HRN model as the HRN strategy around it (hrn_hw.train's helpers
    and the benchmarks pass the model)."""
    if isinstance(learner, Strategy):
        return learner
    from hrn_hw.cl.hrn import HrnStrategy

    return HrnStrategy.around(learner)
