"""The reference (PyTorch) modules of the unit layer kinds and the map helpers they share.

Each kind's `module()` (hrn_hw/layers/<kind>.py) builds one of these; `hrn_hw.reference.units`
re-exports them. `layer_kind` names the registered kind a module is (export reads it).
A map smaller than a conv or pool kernel is zero-padded at the bottom/right to the kernel size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hrn_hw.reference import scaled_grad


def fold_channels(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fold [B, C, H, W] to [B, in_channels, H, W] by summing channel groups (zero-pad if C is short)."""
    c = x.shape[1]
    if c == in_channels:
        return x
    if in_channels == 1:
        return x.sum(dim=1, keepdim=True)   # the same reduction as below, without the reshape
    groups = math.ceil(c / in_channels)
    pad = groups * in_channels - c
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
    return x.reshape(x.shape[0], groups, in_channels, *x.shape[2:]).sum(dim=1)


def pad_to_kernel(x: torch.Tensor, kernel: int, padding: int = 0) -> torch.Tensor:
    """Zero-pad bottom/right so that the padded map is at least kernel x kernel."""
    h, w = x.shape[-2:]
    need_h = max(0, kernel - (h + 2 * padding))
    need_w = max(0, kernel - (w + 2 * padding))
    if need_h or need_w:
        x = F.pad(x, (0, need_w, 0, need_h))
    return x


class ConvLayer(nn.Module):
    """Conv2d whose parameter gradients can be scaled per sample (Eq. 7)."""

    layer_kind = "conv"

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_ch * kernel * kernel)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x, scale=None):
        x = pad_to_kernel(x, self.kernel, self.padding)
        return scaled_grad.conv2d(x, self.weight, self.bias, self.stride, self.padding, scale)


class BatchNormLayer(nn.Module):
    """BatchNorm2d split into a parameter-free normalisation and a per-sample-scalable affine."""

    layer_kind = "batchnorm"

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x, scale=None):
        # A single 1x1 sample has no batch statistics: normalise it with the running ones.
        use_batch = self.training and x.shape[0] * x.shape[2] * x.shape[3] > 1
        xhat = F.batch_norm(x, self.running_mean, self.running_var, None, None,
                            use_batch, self.momentum, self.eps)
        return scaled_grad.channel_affine(xhat, self.weight, self.bias, scale)


class PoolLayer(nn.Module):
    """Max pooling on the bottom/right zero-padded map (`pool`: the torch function)."""

    layer_kind = "maxpool"
    pool = staticmethod(F.max_pool2d)

    def __init__(self, kernel: int, stride: int | None = None):
        super().__init__()
        self.kernel, self.stride = kernel, stride or kernel

    def forward(self, x, scale=None):
        return self.pool(pad_to_kernel(x, self.kernel), self.kernel, self.stride)


class AvgPoolLayer(PoolLayer):
    """Average pooling (the divisor is always kernel^2: zero padding counts)."""

    layer_kind = "avgpool"
    pool = staticmethod(F.avg_pool2d)


class PointwiseLayer(nn.Module):
    """A layer without weights that maps each value on its own, set by one number stored as
    the attribute `arg_name`."""

    arg_name = ""

    def __init__(self, arg: float):
        super().__init__()
        setattr(self, self.arg_name, arg)


class Activation(PointwiseLayer):
    """LeakyReLU (slope 0: ReLU)."""

    layer_kind = "leaky_relu"
    arg_name = "slope"

    def forward(self, x, scale=None):
        return F.leaky_relu(x, self.slope) if self.slope else F.relu(x)


class DropoutLayer(PointwiseLayer):
    """Dropout with probability p while training; the identity in eval mode."""

    layer_kind = "dropout"
    arg_name = "p"

    def forward(self, x, scale=None):
        return F.dropout(x, self.p, self.training)
