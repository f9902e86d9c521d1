"""Convolutional units of the pool, built from config (conv, BN, LeakyReLU, pooling, dropout).

A unit declares `in_channels`; a map with another channel count is folded to it (docs/design.md:
channel c is the sum of map channels c, c + in_channels, ...; missing channels are zero).
A map smaller than a conv or pool kernel is zero-padded at the bottom/right to the kernel size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hrn_hw.errors import ConfigError
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
    def __init__(self, kernel: int, stride: int | None = None):
        super().__init__()
        self.kernel, self.stride = kernel, stride or kernel

    def forward(self, x, scale=None):
        return F.max_pool2d(pad_to_kernel(x, self.kernel), self.kernel, self.stride)


class Activation(nn.Module):
    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x, scale=None):
        return F.leaky_relu(x, self.slope) if self.slope else F.relu(x)


class DropoutLayer(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x, scale=None):
        return F.dropout(x, self.p, self.training)


# Parameters each layer type takes: name -> default (REQUIRED: must be given). The one list of
# supported layer types: config validation (hrn_hw.config) and build_layer both use it.
REQUIRED = object()
LAYER_PARAMS = {
    "conv": {"out_channels": REQUIRED, "kernel": REQUIRED, "stride": 1, "padding": 0, "bias": True},
    "batchnorm": {"momentum": 0.1},
    "leaky_relu": {"slope": 0.01},
    "relu": {},
    "maxpool": {"kernel": 2, "stride": None},      # stride None: the kernel size
    "dropout": {"p": 0.0},
}
LAYER_TYPES = tuple(LAYER_PARAMS)


def _int(spec: dict, key: str, default=None, minimum: int = 1, where: str = "unit layer") -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{where}: {spec['type']} {key} must be {what}, got {value!r}")
    return value


def _number(spec: dict, key: str, default: float, lo: float, hi: float, hi_open: bool,
            where: str) -> float:
    value = spec.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ConfigError(f"{where}: {spec['type']} {key} must be a number in [{lo:g}, {hi:g}"
                          f"{')' if hi_open else ']'}, got {value!r}")
    return float(value)


def validate_layer_spec(spec, where: str = "unit layer") -> dict:
    """Check one layer's config dict; returns its parameters with the defaults filled in.

    Raises ConfigError (one line, prefixed by `where`) for a non-mapping, a missing or unsupported
    type, a parameter the type does not take, a missing required one, or a bad value.
    """
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{where}: a unit layer must be a mapping with a 'type', got {spec!r}"[:300])
    kind = spec["type"]
    if not isinstance(kind, str) or kind not in LAYER_PARAMS:
        raise ConfigError(f"{where}: unsupported unit layer type {kind!r}; supported: {', '.join(LAYER_TYPES)}")
    allowed = LAYER_PARAMS[kind]
    unknown = sorted(str(k) for k in spec if k != "type" and k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: {kind} layer does not take {', '.join(unknown)}; allowed: "
                          f"{', '.join(['type', *allowed])}")
    missing = [k for k, d in allowed.items() if d is REQUIRED and k not in spec]
    if missing:
        raise ConfigError(f"{where}: {kind} layer needs {', '.join(missing)}")
    p: dict = {"type": kind}
    if kind == "conv":
        p["out_channels"] = _int(spec, "out_channels", where=where)
        p["kernel"] = _int(spec, "kernel", where=where)
        p["stride"] = _int(spec, "stride", 1, where=where)
        p["padding"] = _int(spec, "padding", 0, minimum=0, where=where)
        p["bias"] = spec.get("bias", True)
        if not isinstance(p["bias"], bool):
            raise ConfigError(f"{where}: conv bias must be true or false, got {p['bias']!r}")
    elif kind == "batchnorm":
        p["momentum"] = _number(spec, "momentum", 0.1, 0.0, 1.0, False, where)
    elif kind == "leaky_relu":
        p["slope"] = _number(spec, "slope", 0.01, 0.0, 1.0, True, where)
    elif kind == "maxpool":
        p["kernel"] = _int(spec, "kernel", 2, where=where)
        p["stride"] = p["kernel"] if spec.get("stride") is None else _int(spec, "stride", where=where)
    elif kind == "dropout":
        p["p"] = _number(spec, "p", 0.0, 0.0, 1.0, True, where)
    return p


def build_layer(spec: dict, channels: int) -> tuple[nn.Module, int]:
    """One layer from its config dict; returns the module and its output channel count."""
    p = validate_layer_spec(spec)
    kind = p["type"]
    if kind == "conv":
        layer = ConvLayer(channels, p["out_channels"], p["kernel"], p["stride"], p["padding"], p["bias"])
        return layer, p["out_channels"]
    if kind == "batchnorm":
        return BatchNormLayer(channels, p["momentum"]), channels
    if kind == "leaky_relu":
        return Activation(p["slope"]), channels
    if kind == "relu":
        return Activation(0.0), channels
    if kind == "maxpool":
        return PoolLayer(p["kernel"], p["stride"]), channels
    return DropoutLayer(p["p"]), channels


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
