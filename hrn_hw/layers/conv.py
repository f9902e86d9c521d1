"""`conv`: convolution (zero padding, bottom/right up to the kernel); a batchnorm right after it
is folded into it at export (docs/fixed_point.md "Unit")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hrn_hw.errors import ConfigError, ExportError
from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.layers.registry import REQUIRED, LayerKind, int_param, register, window_out_hw


@dataclass
class ConvQ:
    """Convolution with BatchNorm folded in; weight [o, c, k, k] and bias [o] integers."""

    out_channels: int
    kernel: int
    stride: int
    padding: int
    weight: np.ndarray
    w_fmt: Fmt
    bias: np.ndarray | None
    b_fmt: Fmt | None
    out_fmt: Fmt
    kind: str = "conv"


@dataclass
class FoldedConv:
    """Export's float conv: BN folded in (float64 [o, c, k, k] and [o])."""

    weight: np.ndarray
    bias: np.ndarray | None
    conv: object                 # the reference ConvLayer (kernel, stride, padding)
    kind: str = "conv"


@register
class Conv(LayerKind):
    name = "conv"
    params = {"out_channels": REQUIRED, "kernel": REQUIRED, "stride": 1, "padding": 0, "bias": True}
    ir_kind = "conv"
    rtl_stage = "conv"
    unit_stage = 0

    def check(self, spec, where):
        p = {"out_channels": int_param(spec, "out_channels", where=where),
             "kernel": int_param(spec, "kernel", where=where),
             "stride": int_param(spec, "stride", 1, where=where),
             "padding": int_param(spec, "padding", 0, minimum=0, where=where),
             "bias": spec.get("bias", True)}
        if not isinstance(p["bias"], bool):
            raise ConfigError(f"{where}: conv bias must be true or false, got {p['bias']!r}")
        return p

    def module(self, p, channels):
        from hrn_hw.layers.modules import ConvLayer
        return ConvLayer(channels, p["out_channels"], p["kernel"], p["stride"], p["padding"], p["bias"]), p["out_channels"]

    def plain_module(self, p, channels):
        import torch.nn as nn
        return nn.Conv2d(channels, p["out_channels"], p["kernel"], p["stride"], p["padding"], bias=p["bias"]), \
            p["out_channels"]

    # ---- export ----------------------------------------------------------------------------

    def fold(self, mods, j, folded, unit):
        """The conv, with the batchnorm right after it (if any) folded in: w' = w g,
        b' = (b - mean) g + beta, g = gamma / sqrt(var + eps)."""
        import torch

        from hrn_hw.layers.modules import BatchNormLayer
        mod = mods[j]
        w = mod.weight.detach().double().numpy()
        b = None if mod.bias is None else mod.bias.detach().double().numpy()
        used = 1
        if j + 1 < len(mods) and isinstance(mods[j + 1], BatchNormLayer):
            bn = mods[j + 1]
            g = (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)).numpy()
            mean, beta = bn.running_mean.double().numpy(), bn.bias.detach().double().numpy()
            w = w * g[:, None, None, None]
            b = ((b if b is not None else 0.0) - mean) * g + beta
            used = 2
        folded.append(FoldedConv(w, b, mod))
        return used

    def check_float(self, fl, name, checked):
        checked(f"{name}.weight", fl.weight)
        if fl.bias is not None:
            checked(f"{name}.bias", fl.bias)

    def float_forward(self, fl, y, ranges, key):
        """The folded conv in float64; records |max| of its output under `key`.out."""
        import torch
        import torch.nn.functional as F

        from hrn_hw.layers.modules import pad_to_kernel
        c = fl.conv
        w = torch.from_numpy(fl.weight)
        b = None if fl.bias is None else torch.from_numpy(fl.bias)
        y = F.conv2d(pad_to_kernel(y, c.kernel, c.padding), w, b, c.stride, c.padding)
        if y.numel():
            k = f"{key}.out"
            ranges[k] = max(ranges.get(k, 0.0), float(y.abs().max()))
        return y

    def quantize(self, fl, name, q):
        """Weights and bias in the finest formats holding them; the output format from the
        calibrated range (the largest other conv range when the unit was never reached)."""
        from hrn_hw.fixedpoint.fmt import quantize
        w_fmt = q.precision.fmt(f"{name}.weight", np.abs(fl.weight).max(), weight=True)
        w = quantize(fl.weight, w_fmt, q.counter, f"{name}.weight")
        b, b_fmt = None, None
        if fl.bias is not None:
            b_fmt = q.precision.fmt(f"{name}.bias", np.abs(fl.bias).max(), weight=True)
            b = quantize(fl.bias, b_fmt, q.counter, f"{name}.bias")
        out_fmt = q.precision.fmt(f"{name}.out", q.ranges.get(f"{name}.out", q.fallback))
        return ConvQ(int(w.shape[0]), fl.conv.kernel, fl.conv.stride, fl.conv.padding, w, w_fmt, b, b_fmt, out_fmt)

    # ---- IR --------------------------------------------------------------------------------

    def to_manifest(self, layer):
        return {"type": "conv", "out_channels": layer.out_channels, "kernel": layer.kernel,
                "stride": layer.stride, "padding": layer.padding,
                "weight_shape": list(layer.weight.shape), "weight_format": layer.w_fmt.to_dict(),
                "bias_format": layer.b_fmt.to_dict() if layer.bias is not None else None,
                "out_format": layer.out_fmt.to_dict()}

    def from_manifest(self, d, arrays, key):
        F = Fmt.from_dict
        bias = arrays.get(f"{key}.bias")
        layer = ConvQ(d["out_channels"], d["kernel"], d["stride"], d["padding"], arrays[f"{key}.weight"],
                      F(d["weight_format"]), bias, F(d["bias_format"]) if d["bias_format"] else None,
                      F(d["out_format"]))
        if list(layer.weight.shape) != d["weight_shape"]:
            raise ExportError(f"{key}.weight has shape {list(layer.weight.shape)}, "
                              f"manifest says {d['weight_shape']}")
        return layer

    def arrays(self, layer):
        out = {"weight": (layer.weight, layer.w_fmt)}
        if layer.bias is not None:
            out["bias"] = (layer.bias, layer.b_fmt)
        return out

    def tensor_formats(self, layer):
        out = [("weight", layer.w_fmt)]
        if layer.b_fmt is not None:
            out.append(("bias", layer.b_fmt))
        return out + [("out", layer.out_fmt)]

    def out_shape(self, layer, c, h, w):
        return (layer.out_channels, *window_out_hw(h, w, layer.kernel, layer.stride, layer.padding))

    def out_fmt(self, layer, fmt):
        return layer.out_fmt

    # ---- golden ----------------------------------------------------------------------------

    def golden(self, layer, x, frac, fmt, sat, name):
        """Exact convolution, bias aligned, one conversion to the output format."""
        from hrn_hw.fixedpoint import ops
        x = ops.conv2d(x, frac, layer.weight, layer.w_fmt.frac, layer.bias,
                       layer.b_fmt.frac if layer.b_fmt else 0, layer.stride, layer.padding,
                       layer.out_fmt, sat, name)
        return x, layer.out_fmt.frac, layer.out_fmt

    # ---- HLS -------------------------------------------------------------------------------

    def hls_arrays(self, layer, tag, r):
        from hrn_hw.hls.ctypes_ import array_init, raw_c_type
        r.types.append(f"typedef {layer.w_fmt.c_type()} {tag}_w_t;")
        r.types.append(f"typedef {layer.out_fmt.c_type()} {tag}_out_t;")
        bias = layer.bias if layer.bias is not None else np.zeros(layer.out_channels, dtype=np.int64)
        b_fmt = layer.b_fmt if layer.b_fmt is not None else layer.w_fmt
        r.types.append(f"typedef {b_fmt.c_type()} {tag}_b_t;")
        r.weights.append(f"static const {raw_c_type(layer.w_fmt.width)} {tag.upper()}_W[{layer.weight.size}] = "
                         f"{array_init(layer.weight.reshape(-1))};")
        r.weights.append(f"static const {raw_c_type(b_fmt.width)} {tag.upper()}_B[{layer.out_channels}] = "
                         f"{array_init(bias)};")

    def hls(self, layer, tag, st, r):
        """hrn::conv2d (hrn_unit.h) with an exact accumulator sized from the input's bound."""
        from hrn_hw.hls.ctypes_ import acc_type, acc_width, check_conversion, max_int
        k, s, p = layer.kernel, layer.stride, layer.padding
        ho, wo = window_out_hw(st.h, st.w, k, s, p)
        frac = st.in_frac + layer.w_fmt.frac
        b_frac = layer.b_fmt.frac if layer.b_fmt is not None else layer.w_fmt.frac
        top = max(frac, b_frac)
        bias_bound = int(np.abs(layer.bias).max()) if layer.bias is not None and layer.bias.size else 0
        bound = (st.max_in * int(np.abs(layer.weight).max() or 1) * st.cur_c * k * k << (top - frac)) + \
            (bias_bound << (top - b_frac))
        acc_t = acc_type(top, bound)
        check_conversion(acc_width(bound), top, layer.out_fmt, f"{st.name}.out")
        o, n = layer.out_channels, st.n
        lines = [f"    {tag}_out_t x{n}[{o * ho * wo}];",
                 f"    hrn::conv2d<{st.cur_c}, {st.h}, {st.w}, {o}, {k}, {s}, {p}, {ho}, {wo}, {st.cur_t}, {tag}_w_t, "
                 f"{tag}_b_t, {acc_t}, {tag}_out_t>({st.cur}, {tag.upper()}_W, {tag.upper()}_B, x{n});"]
        st.cur, st.cur_t, st.cur_c, st.h, st.w = f"x{n}", f"{tag}_out_t", o, ho, wo
        st.in_frac, st.in_fmt_w, st.max_in = layer.out_fmt.frac, layer.out_fmt.width, max_int(layer.out_fmt)
        return lines

    # ---- dataflow --------------------------------------------------------------------------

    def work(self, layer, c, h, w):
        """out_c x out_h x out_w x in_c x k^2 MACs."""
        ho, wo = window_out_hw(h, w, layer.kernel, layer.stride, layer.padding)
        return layer.out_channels * ho * wo * c * layer.kernel ** 2, 0
