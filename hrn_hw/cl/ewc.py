"""Elastic weight consolidation (EWC, Kirkpatrick et al. 2017) on the VC.

After each task k: the diagonal Fisher F_k of the encoder's parameters (not the heads) and the
anchor theta*_k (those parameters then). While training a later task:

    loss = CE(head_t) + ewc_lambda / 2 * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2

F_k is the empirical Fisher: the mean over `fisher_samples` training samples of task k (drawn
without replacement, the same in a resumed run) of the squared gradient of the log-likelihood
of the sample's LABEL, log p(y | x), computed one sample at a time in eval mode (running
batchnorm statistics, no dropout). One penalty per earlier task (not the online variant).
Defaults per scenario (the paper): ewc_lambda 1024 Pairwise-MNIST, 400 Fashion-MNIST -> MNIST,
250 SVHN -> incremental CIFAR-100; 200 Fisher samples (the config's `methods.ewc`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hrn_hw.cl.strategy import sample_rows
from hrn_hw.cl.vc import VcStrategy

FISHER_STREAM = 1        # salt of the Fisher samples' random stream


def fisher_diagonal(model, params: dict, task: int, x: np.ndarray, y: np.ndarray, device: str) -> dict:
    """{name: mean over the samples of (d log p(y|x) / d param)^2} for `params` {name: tensor}
    of `model`, head `task`, samples x (raw pixels) and labels y, one sample at a time, eval mode."""
    was_training = model.training
    model.eval()
    names, tensors = list(params), list(params.values())
    acc = [torch.zeros_like(p) for p in tensors]
    for i in range(len(x)):
        xb = torch.from_numpy(x[i:i + 1]).to(device)
        yb = torch.from_numpy(y[i:i + 1]).to(device)
        nll = F.cross_entropy(model(xb, task), yb)                  # -log p(y | x)
        for a, g in zip(acc, torch.autograd.grad(nll, tensors)):
            a.add_(g.square())
    model.train(was_training)
    return {n: a / max(len(x), 1) for n, a in zip(names, acc)}


def ewc_penalty(params: dict, fishers: list[dict], anchors: list[dict], lam: float) -> torch.Tensor:
    """lam / 2 * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2 over `params` {name: tensor}."""
    total = None
    for fisher, anchor in zip(fishers, anchors):
        for name, p in params.items():
            term = (fisher[name] * (p - anchor[name]).square()).sum()
            total = term if total is None else total + term
    return 0.5 * lam * total


class EwcStrategy(VcStrategy):
    """The VC with the EWC penalty on its encoder."""

    name = "ewc"

    def __init__(self, cfg, seed: int = 0):
        super().__init__(cfg, seed)
        self.fishers: list[dict] = []
        self.anchors: list[dict] = []

    def encoder_params(self) -> dict:
        return dict(self.model.features.named_parameters())

    def end_task(self, t: int, task, device: str) -> None:
        rows = sample_rows(len(task.train_x), self.cfg.methods.ewc.fisher_samples, self.seed, t, FISHER_STREAM)
        params = self.encoder_params()
        self.fishers.append(fisher_diagonal(self.model, params, t, task.train_x[rows], task.train_y[rows], device))
        self.anchors.append({n: p.detach().clone() for n, p in params.items()})

    def penalty(self, x: torch.Tensor, z: torch.Tensor, t: int) -> torch.Tensor | None:
        if not self.fishers:
            return None
        return ewc_penalty(self.encoder_params(), self.fishers, self.anchors, self.cfg.methods.ewc.ewc_lambda)

    def to(self, device) -> "EwcStrategy":
        super().to(device)
        self.fishers = [{n: v.to(device) for n, v in f.items()} for f in self.fishers]
        self.anchors = [{n: v.to(device) for n, v in a.items()} for a in self.anchors]
        return self

    def state(self) -> dict:
        return {"fishers": self.fishers, "anchors": self.anchors}

    def load_state(self, state: dict) -> None:
        params = self.encoder_params()
        fishers, anchors = state["fishers"], state["anchors"]
        if not isinstance(fishers, list) or not isinstance(anchors, list) or len(fishers) != len(anchors):
            raise ValueError("ewc: fishers and anchors must be lists of the same length")
        for part in fishers + anchors:
            if not isinstance(part, dict) or set(part) != set(params):
                raise ValueError("ewc: a Fisher or anchor does not name the encoder's parameters")
            for name, p in params.items():
                if part[name].shape != p.shape:
                    raise ValueError(f"ewc: {name} has shape {list(part[name].shape)}, expected {list(p.shape)}")
        dev = next(iter(params.values())).device
        self.fishers = [{n: v.to(dev, torch.float32) for n, v in f.items()} for f in fishers]
        self.anchors = [{n: v.to(dev, torch.float32) for n, v in a.items()} for a in anchors]
