"""Encoder-based lifelong learning (ELL, Rannen Triki et al. 2017) on the VC.

After each task k, an undercomplete autoencoder AE_k (code sigma(W_enc z + b), reconstruction
W_dec code + b) is trained for `ae_epochs` stabilisation epochs on the encoder's features
z = f(x) of task k's training set (eval mode, encoder frozen), with the loss

    ||AE_k(z) - z||^2 + ae_task_weight * CE(head_k(AE_k(z)), y)

(the reconstruction keeps what head k needs), the config's optimiser and learning rate, batch
size as in training. While training a later task t, with f* the model snapshot taken at the
start of task t (eval mode, frozen):

    loss = CE(head_t) + distill * sum_{k < t} soft CE(head_k(f(x)), softmax(head*_k(f*(x)) / T))
                      + alpha * sum_{k < t} ||code_k(f(x)) - code_k(f*(x))||^2

(squared norms summed over the code, averaged over the batch; the distillation is LwF's, at
temperature T; the old heads train with the encoder). Defaults (the config's `methods.ell`):
code_size 100 Pairwise-MNIST, 300 Fashion-MNIST / MNIST, 2800 SVHN / CIFAR (the paper);
ae_epochs 2 (Rannen et al. use 2-3); T 3.0 (the paper); alpha 1e-3 and ae_task_weight 1e-6
(chosen after Rannen et al., not re-checked against their paper); distill 1. The code is capped at features - 1 so the autoencoder
stays undercomplete on a small encoder (the VC of Fashion-MNIST has 72 features).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hrn_hw.cl.lwf import LwfStrategy
from hrn_hw.cl.strategy import build_optimizer

AE_STREAM = 2            # salt of the autoencoder epochs' sample order


class Autoencoder(nn.Module):
    """One layer each way: code = sigmoid(enc(z)), reconstruction = dec(code)."""

    def __init__(self, features: int, code: int):
        super().__init__()
        self.enc = nn.Linear(features, code)
        self.dec = nn.Linear(code, features)

    def code(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.enc(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(self.code(z))


def code_size(wanted: int, features: int) -> int:
    """The code length: `wanted`, capped below the feature size (undercomplete)."""
    return max(1, min(wanted, features - 1))


def code_loss(autoencoders, z: torch.Tensor, z_old: torch.Tensor) -> torch.Tensor:
    """sum_k mean over the batch of ||code_k(z) - code_k(z_old)||^2."""
    return sum(((ae.code(z) - ae.code(z_old)) ** 2).sum(1).mean() for ae in autoencoders)


@torch.no_grad()
def features_of(model, x: np.ndarray, device: str, batch: int = 1000) -> torch.Tensor:
    """f(x) of raw pixels x in eval mode, [N, features]."""
    was_training = model.training
    model.eval()
    z = torch.cat([model.encode(torch.from_numpy(x[i:i + batch]).to(device)) for i in range(0, len(x), batch)])
    model.train(was_training)
    return z


def train_autoencoder(model, t: int, task, cfg, seed: int, device: str) -> Autoencoder:
    """AE_t on the features of task t's training set (see the module's docstring)."""
    p = cfg.methods.ell
    z = features_of(model, task.train_x, device)
    y = torch.from_numpy(task.train_y).to(device)
    ae = Autoencoder(z.shape[1], code_size(p.code_size, z.shape[1])).to(device)
    head = model.heads[t]
    was_training = head.training
    head.eval()
    opt = build_optimizer(list(ae.parameters()), cfg)
    bs = cfg.training.batch_size
    for e in range(p.ae_epochs):
        order = torch.from_numpy(np.random.default_rng([seed, t, AE_STREAM, e]).permutation(len(z))).to(device)
        for start in range(0, len(order), bs):
            rows = order[start:start + bs]
            rec = ae(z[rows])
            loss = (rec - z[rows]).square().sum(1).mean() + p.ae_task_weight * F.cross_entropy(head(rec), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=list(ae.parameters()))
            opt.step()
    head.train(was_training)
    ae.eval().requires_grad_(False)
    return ae


class EllStrategy(LwfStrategy):
    """The VC with LwF's distillation and the autoencoders' code loss."""

    name = "ell"
    weight_key = "distill"

    def __init__(self, cfg, seed: int = 0):
        super().__init__(cfg, seed)
        self.autoencoders: list[Autoencoder] = []

    def old_terms(self, z: torch.Tensor, z_old: torch.Tensor) -> torch.Tensor:
        return super().old_terms(z, z_old) + self.cfg.methods.ell.alpha * code_loss(self.autoencoders, z, z_old)

    def end_task(self, t: int, task, device: str) -> None:
        super().end_task(t, task, device)
        self.autoencoders.append(train_autoencoder(self.model, t, task, self.cfg, self.seed, device))

    def to(self, device) -> "EllStrategy":
        super().to(device)
        for ae in self.autoencoders:
            ae.to(device)
        return self

    def state(self) -> dict:
        return {**super().state(), "autoencoders": [ae.state_dict() for ae in self.autoencoders]}

    def load_state(self, state: dict) -> None:
        super().load_state({"snapshot": state["snapshot"]})
        aes = state["autoencoders"]
        if not isinstance(aes, list):
            raise ValueError("ell: autoencoders must be a list")
        dev = next(self.model.parameters()).device
        self.autoencoders = []
        for sd in aes:
            code, features = sd["enc.weight"].shape
            if features != self.model.flat_features:
                raise ValueError(f"ell: an autoencoder takes {features} features, the encoder gives "
                                 f"{self.model.flat_features}")
            ae = Autoencoder(features, code)
            ae.load_state_dict(sd, strict=True)
            self.autoencoders.append(ae.to(dev).eval().requires_grad_(False))
