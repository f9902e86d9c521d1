"""The vanilla CNN (VC): the multi-head baseline network, and plain fine-tuning as a strategy.

"The same conv layers and heads" as an HRN config: the layers of every unit group, in group
order, chained as one plain nn.Sequential (standard nn.Conv2d / nn.BatchNorm2d / LeakyReLU,
each conv taking the previous block's channels instead of folding them), then flatten and one
HRN task head per task (hrn_hw.reference.hrn.Head: same hidden sizes, activation and dropout) on the
flattened map. No hashing, no routing, no bases, no per-sample gradient scaling.

For the pairwise-MNIST config: conv(1->16, 5x5, s3, p2)+BN+LeakyReLU -> [16, 10, 10]
-> conv(16->16, 2x2, s3, p0)+BN+LeakyReLU -> [16, 3, 3] -> flatten 144 -> 60 -> 10 -> classes.

EWC, LwF and ELL train this network too (their strategies subclass `VcStrategy`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hrn_hw import layers
from hrn_hw.cl.strategy import Strategy
from hrn_hw.config import Config
from hrn_hw.errors import ConfigError
from hrn_hw.reference.hrn import Head, pixels_to_input


def _layer(spec: dict, channels: int) -> tuple[nn.Module, int]:
    """A unit layer as a plain torch module (its kind's, hrn_hw.layers) and its out channels."""
    p = layers.validate_spec(spec)
    return layers.get(p["type"]).plain_module(p, channels)


class VanillaCNN(nn.Module):
    """The unit groups' layers chained (the encoder), flattened, then one HRN-style head per
    task; `num_classes` adds the first head. forward(x, task) gives head `task`'s logits."""

    def __init__(self, cfg: Config, num_classes: int | None = None, in_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.cfg = cfg
        self.in_shape = tuple(int(d) for d in in_shape)
        mods, ch = [], self.in_shape[0]
        for group in cfg.units:
            for spec in group.layers:
                mod, ch = _layer(dict(spec), ch)
                mods.append(mod)
        self.features = nn.Sequential(*mods)
        self.features.eval()
        with torch.no_grad():
            self.feature_shape = tuple(self.features(torch.zeros(1, *self.in_shape)).shape[1:])
        self.features.train()
        n = 1
        for d in self.feature_shape:
            n *= d
        self.flat_features = n
        self.heads = nn.ModuleList()
        if num_classes is not None:
            self.add_head(num_classes)

    def add_head(self, num_classes: int) -> int:
        """Add the head of a new task (on the encoder's device); returns its index."""
        h = self.cfg.head
        dev = next(self.features.parameters()).device
        self.heads.append(Head(self.flat_features, tuple(h.hidden), num_classes, h.activation, h.dropout).to(dev))
        return len(self.heads) - 1

    def encoder_parameters(self):
        return self.features.parameters()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened feature map f(x) [B, flat_features] of raw pixels x."""
        return self.features(pixels_to_input(x)).flatten(1)

    def forward(self, x: torch.Tensor, task: int = 0) -> torch.Tensor:
        return self.heads[task](self.encode(x))


class VcStrategy(Strategy):
    """Plain fine-tuning of the shared encoder: cross-entropy on head t only (old heads frozen).
    Subclasses add their term through `penalty`."""

    name = "vc"

    def build(self, in_shape: tuple) -> VanillaCNN:
        try:
            self.model = VanillaCNN(self.cfg, None, tuple(in_shape))
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:160]
            raise ConfigError(f"config {self.cfg.name!r}: the unit layers chained do not fit a "
                              f"{list(in_shape)} input ({first})") from None
        return self.model

    def structure(self) -> dict:
        return {"in_shape": list(self.model.in_shape)}

    def rebuild(self, structure: dict, head_sizes: list[int]) -> VanillaCNN:
        in_shape = [int(d) for d in structure["in_shape"]]
        if len(in_shape) != 3 or min(in_shape) < 1:
            raise ValueError(f"in_shape {in_shape} is not [C, H, W]")
        self.model = VanillaCNN(self.cfg, None, tuple(in_shape))
        for n in head_sizes:
            self.model.add_head(n)
        return self.model

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor, t: int, oracle: bool = False):
        z = self.model.encode(x)
        loss = F.cross_entropy(self.model.heads[t](z), y)
        term = self.penalty(x, z, t)
        return (loss if term is None else loss + term), None

    def penalty(self, x: torch.Tensor, z: torch.Tensor, t: int) -> torch.Tensor | None:
        """The method's own loss term on batch x (features z = f(x)) of task t; None: none."""
        return None
