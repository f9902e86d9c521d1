"""Convolutional units of the pool, built from config (conv, BN, LeakyReLU, pooling, dropout).

A unit declares `in_channels`; a map with another channel count is folded to it (docs/design.md:
channel c is the sum of map channels c, c + in_channels, ...; missing channels are zero).
A map smaller than a conv or pool kernel is zero-padded at the bottom/right to the kernel size.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hrn_hw import layers as layer_kinds
from hrn_hw.errors import ConfigError
from hrn_hw.layers.modules import (Activation, BatchNormLayer, ConvLayer, DropoutLayer, PoolLayer, fold_channels,
                                   pad_to_kernel)
from hrn_hw.reference import scaled_grad

__all__ = ["fold_channels", "pad_to_kernel", "ConvLayer", "BatchNormLayer", "PoolLayer", "Activation", "DropoutLayer",
           "REQUIRED", "LAYER_PARAMS", "LAYER_TYPES", "validate_layer_spec", "build_layer", "ConvUnit"]

# The layer kinds (config parameters, validation, modules) live in hrn_hw.layers, one
# definition per kind; LAYER_PARAMS / LAYER_TYPES are its table, as config validation and
# build_layer see it.
REQUIRED = layer_kinds.REQUIRED
LAYER_PARAMS = {name: dict(layer_kinds.get(name).params) for name in layer_kinds.kinds()}
LAYER_TYPES = tuple(LAYER_PARAMS)


def validate_layer_spec(spec, where: str = "unit layer") -> dict:
    """Check one layer's config dict; returns its parameters with the defaults filled in.

    Raises ConfigError (one line, prefixed by `where`) for a non-mapping, a missing or unsupported
    type, a parameter the type does not take, a missing required one, or a bad value.
    """
    return layer_kinds.validate_spec(spec, where)


def build_layer(spec: dict, channels: int) -> tuple[nn.Module, int]:
    """One layer from its config dict; returns the module and its output channel count."""
    p = validate_layer_spec(spec)
    return layer_kinds.get(p["type"]).module(p, channels)


class ConvUnit(nn.Module):
    """The convolutional part of one HRN unit."""

    _eval_cache = None   # (source tensors, their versions and storage, BN-folded (W', b')): _folded_bn

    def __init__(self, in_channels: int, layers: list[dict]):
        super().__init__()
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels <= 0:
            raise ConfigError(f"unit in_channels must be a positive integer, got {in_channels!r}")
        if not isinstance(layers, (list, tuple)):
            raise ConfigError(f"unit layers must be a list of layer mappings, got {type(layers).__name__}")
        if not layers:
            raise ConfigError("a unit needs at least one layer")
        self.in_channels = in_channels
        mods, ch = [], in_channels
        for spec in layers:
            mod, ch = build_layer(spec, ch)
            mods.append(mod)
        self.layers = nn.ModuleList(mods)
        self.out_channels = ch

    def _fusable(self, mods: list | None = None) -> bool:
        """The unit starts with conv -> batchnorm -> (leaky) ReLU, run as one fused block."""
        m = list(self.layers._modules.values()) if mods is None else mods
        return (len(m) >= 3 and type(m[0]) is ConvLayer and type(m[1]) is BatchNormLayer
                and type(m[2]) is Activation)

    def forward(self, x: torch.Tensor, grad_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Run the unit on a map [B, C, H, W]; `grad_scale` [B] applies Eq. 7 to its parameters."""
        x = fold_channels(x, self.in_channels)
        rest = mods = list(self.layers._modules.values())   # (ModuleList indexing is slow)
        if self._fusable(mods):
            conv, bn, act = mods[0], mods[1], mods[2]
            x = pad_to_kernel(x, conv.kernel, conv.padding)
            h = (x.shape[2] + 2 * conv.padding - conv.kernel) // conv.stride + 1
            w = (x.shape[3] + 2 * conv.padding - conv.kernel) // conv.stride + 1
            use_batch = bn.training and x.shape[0] * h * w > 1
            if not use_batch and not (torch.is_grad_enabled() and (
                    x.requires_grad or conv.weight.requires_grad or bn.weight.requires_grad)):
                weight, shift = self._folded_bn(conv, bn)
                x = scaled_grad.conv_act_eval(x, weight, shift, conv.stride, conv.padding, act.slope)
            else:
                if self._eval_cache is not None:   # BN statistics may update (no version bump)
                    self._eval_cache = None       # and a step follows
                x = scaled_grad.unit_block(x, conv.weight, conv.bias, bn.weight, bn.bias,
                                           bn.running_mean, bn.running_var, conv.stride, conv.padding,
                                           use_batch, bn.momentum, bn.eps, act.slope, grad_scale)
            rest = mods[3:]
        for layer in rest:
            x = layer(x, grad_scale)
        return x

    def _folded_bn(self, conv: ConvLayer, bn: BatchNormLayer) -> tuple[torch.Tensor, torch.Tensor]:
        """The eval block's BN-folded (W', b') (scaled_grad.fold_bn), cached between no-grad eval
        forwards: any other forward drops it (BN's running-statistics update bumps no version
        counter), and it is recomputed when a source tensor is replaced, moved or written in place
        (version counter; writes through `.data` are not seen)."""
        sources = (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        key = tuple((t._version, t.data_ptr()) for t in sources if t is not None)
        cache = self._eval_cache
        if cache is None or cache[1] != key or any(a is not b for a, b in zip(cache[0], sources)):
            with torch.inference_mode(False), torch.no_grad():   # ordinary tensors in the cache
                folded = scaled_grad.fold_bn(*sources, bn.eps)
            cache = self._eval_cache = (sources, key, folded)
        return cache[2]

    def frozen_runner(self):
        """`forward` for a series of eval calls without autograd during which nothing changes
        the unit (one inference routing pass, `HRN.route_frozen`): the checks of `forward` and
        the BN-folded weights' lookup made once. Returns the unit itself (its __call__) where
        that shortcut would skip or change something: hooks, a replaced `forward`, a layer in
        training mode, no fusable conv -> batchnorm -> activation start."""
        mods = list(self.layers._modules.values())
        if (self.training or any(m.training for m in mods) or not self._fusable(mods)
                or "forward" in self.__dict__ or type(self).forward is not ConvUnit.forward
                or self._forward_hooks or self._forward_pre_hooks or self._backward_hooks
                or self._backward_pre_hooks or nn.modules.module._has_any_global_hook()):
            return self
        conv, bn, act = mods[0], mods[1], mods[2]
        rest = mods[3:]
        weight, shift = self._folded_bn(conv, bn)
        in_channels, kernel, stride, padding, slope = (self.in_channels, conv.kernel, conv.stride,
                                                       conv.padding, act.slope)

        def run(x: torch.Tensor) -> torch.Tensor:   # forward's eval path, without the checks
            x = pad_to_kernel(fold_channels(x, in_channels), kernel, padding)
            x = scaled_grad.conv_act_eval(x, weight, shift, stride, padding, slope)
            for layer in rest:
                x = layer(x, None)
            return x
        return run

    def forward_unfused(self, x: torch.Tensor, grad_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Layer by layer (the fused block's specification; tests compare the two)."""
        self._eval_cache = None
        x = fold_channels(x, self.in_channels)
        for layer in self.layers:
            x = layer(x, grad_scale)
        return x

    @torch.no_grad()
    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Output (C, H, W) for an input map of shape (C, H, W)."""
        was = self.training
        self.eval()
        out = self.forward(torch.zeros(1, *shape))
        self.train(was)
        return tuple(out.shape[1:])
