"""`leaky_relu` (slope, default 0.01) and `relu` (slope 0): x > 0 ? x : convert(alpha * x) in
x's own format (hls4ml nnet::leaky_relu), alpha = round(slope * 2^16) / 2^16. Both become one
IR layer kind, `leaky_relu`."""

from __future__ import annotations

from dataclasses import dataclass

from hrn_hw.errors import ConfigError
from hrn_hw.layers.registry import LayerKind, number_param, register

ALPHA_FRAC = 16


@dataclass
class ActQ:
    """LeakyReLU (alpha / 2**alpha_frac; alpha 0 is ReLU)."""

    alpha: int
    alpha_frac: int
    kind: str = "leaky_relu"


def alpha_q(slope: float) -> ActQ:
    """The quantised slope: round(slope * 2^ALPHA_FRAC) / 2^ALPHA_FRAC."""
    return ActQ(int(round(slope * (1 << ALPHA_FRAC))), ALPHA_FRAC)


@dataclass
class FloatAct:
    slope: float
    kind: str = "leaky_relu"


@register
class LeakyRelu(LayerKind):
    name = "leaky_relu"
    params = {"slope": 0.01}
    ir_kind = "leaky_relu"
    rtl_stage = "act"            # the conv engine's converter: alpha * y in the out format
    unit_stage = 2

    def check(self, spec, where):
        return {"slope": number_param(spec, "slope", 0.01, 0.0, 1.0, True, where)}

    def _slope(self, p) -> float:
        return p["slope"]

    def module(self, p, channels):
        from hrn_hw.layers.modules import Activation
        return Activation(self._slope(p)), channels

    def plain_module(self, p, channels):
        import torch.nn as nn
        return nn.LeakyReLU(p["slope"]), channels

    def fold(self, mods, j, folded, unit):
        if not any(fl.kind == "conv" for fl in folded):
            raise ConfigError(f"unit {unit}: export needs a conv before the first activation")
        folded.append(FloatAct(mods[j].slope))
        return 1

    def float_forward(self, fl, y, ranges, key):
        import torch.nn.functional as F
        return F.leaky_relu(y, fl.slope) if fl.slope else F.relu(y)

    def quantize(self, fl, name, q):
        return alpha_q(fl.slope)

    def to_manifest(self, layer):
        return {"type": "leaky_relu", "alpha": layer.alpha, "alpha_frac": layer.alpha_frac}

    def from_manifest(self, d, arrays, key):
        return ActQ(int(d["alpha"]), int(d["alpha_frac"]))

    def out_shape(self, layer, c, h, w):
        return (c, h, w)

    def golden(self, layer, x, frac, fmt, sat, name):
        from hrn_hw.fixedpoint import ops
        if fmt is None:
            raise ValueError(f"{name}: an activation needs a conv before it (its format)")
        return ops.leaky_relu(x, fmt, layer.alpha, layer.alpha_frac, sat, name), frac, fmt

    def hls(self, layer, tag, st, r):
        """hls4ml nnet::leaky_relu in the map's own type."""
        size = st.cur_c * st.h * st.w
        cfg = r.act_cfg(size)
        lines = [f"    {st.cur_t} x{st.n}[{size}];",
                 f"    nnet::leaky_relu<{st.cur_t}, alpha_t, {st.cur_t}, {cfg}>({st.cur}, "
                 f"alpha_t({layer.alpha * 2.0 ** -layer.alpha_frac!r}), x{st.n});"]
        st.cur = f"x{st.n}"
        return lines

    def work(self, layer, c, h, w):
        """One op per element."""
        return 0, c * h * w


@register
class Relu(LeakyRelu):
    name = "relu"
    params = {}

    def check(self, spec, where):
        return {}

    def _slope(self, p) -> float:
        return 0.0

    def plain_module(self, p, channels):
        import torch.nn as nn
        return nn.ReLU(), channels
