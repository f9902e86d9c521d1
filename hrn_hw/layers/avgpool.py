"""`avgpool`: the mean of each k x k window (kernel, default 2; stride, default the kernel), as
torch's avg_pool2d: positions beyond a map smaller than the kernel count as 0 and the divisor is
always k^2.

Fixed point (docs/fixed_point.md "avgpool"): the window's exact sum S of the raw integers (a
wide accumulator), then q = floor((S + floor(k^2 / 2)) / k^2), i.e. S / k^2 rounded half up
(ties towards +inf, as `rnd`) whatever the map format's rounding mode; with odd k^2 there are
no ties. q is in the input's format (same width and fraction bits): it lies between the
window's minimum and maximum (0 included), so it never saturates. The golden model divides
exactly (`avgpool`); the HLS C++ divides its raw integer and floors (hrn::avgpool); the RTL
shifts for a power-of-two k^2 and otherwise multiplies by a reciprocal with enough bits to be
exact over the accumulator's whole range (`rtl_finish`, `div_magic`).
"""

from __future__ import annotations

import numpy as np

from hrn_hw.layers.pool import PoolKind
from hrn_hw.layers.registry import register, window_out_hw


def avgpool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Golden: floor((S + floor(k^2/2)) / k^2) of each k x k window's exact sum S (int64), maps
    [n, C, H, W] zero-padded bottom/right only when smaller than the kernel."""
    from hrn_hw.fixedpoint.ops import pad_map, windows
    d = kernel * kernel
    win = windows(pad_map(np.asarray(x, dtype=np.int64), kernel, 0), kernel, stride)
    s = win.sum(axis=(4, 5), dtype=np.int64)
    return ((s + d // 2) // d).transpose(0, 3, 1, 2)


def div_magic(d: int, bits: int) -> tuple[int, int]:
    """(m, shift) with floor(n / d) == (n * m) >> shift for every integer 0 <= n < 2^bits:
    l = ceil(log2 d), shift = bits + l, m = ceil(2^shift / d). Exact: m d = 2^shift + e with
    0 <= e < d <= 2^l, so n m / 2^shift = n / d + n e / (d 2^shift) and the error term is below
    2^bits 2^l / (d 2^(bits + l)) = 1 / d, which cannot reach the next multiple of 1/d above
    n / d's fraction (at most (d - 1) / d) (Granlund and Montgomery 1994, Thm. 4.2)."""
    l = (d - 1).bit_length()
    shift = bits + l
    return -(-(1 << shift) // d), shift


@register
class AvgPool(PoolKind):
    name = "avgpool"
    module_class, plain_class = "AvgPoolLayer", "AvgPool2d"
    rtl_acc_name = "sum"

    def golden(self, layer, x, frac, fmt, sat, name):
        return avgpool(x, layer.kernel, layer.stride), frac, fmt

    def hls(self, layer, tag, st, r):
        """hrn::avgpool (hrn_unit.h): the window sum in an exact ap_fixed accumulator of the
        map's fraction bits, then the rounded floor division of its raw integer."""
        from hrn_hw.hls.ctypes_ import acc_type
        k, s = layer.kernel, layer.stride
        ho, wo = window_out_hw(st.h, st.w, k, s, 0)
        acc_t = acc_type(st.in_frac, st.max_in * k * k)
        lines = [f"    {st.cur_t} x{st.n}[{st.cur_c * ho * wo}];",
                 f"    hrn::avgpool<{st.cur_c}, {st.h}, {st.w}, {k}, {s}, {ho}, {wo}, {st.cur_t}, {acc_t} >"
                 f"({st.cur}, x{st.n});"]
        st.cur, st.h, st.w = f"x{st.n}", ho, wo
        return lines

    # ---- RTL conv engine: the OUT phase sums the kp*kp reads, then divides ----------------

    def rtl_acc_shape(self, width, kernel):
        from amaranth import signed
        return signed(width + (kernel * kernel - 1).bit_length() + 1)

    def rtl_combine(self, first, val, acc):
        from amaranth import Mux
        return Mux(first, val, acc + val)

    def rtl_finish(self, acc, kernel, width):
        """floor((S + floor(d/2)) / d), d = kernel^2, of a sum S of d words of `width` bits:
        an arithmetic shift when d is a power of two; otherwise S + d/2 is offset by d 2^(width-1)
        (a multiple of d, so the floor moves by exactly 2^(width-1)) to lie in [0, d 2^width),
        multiplied by div_magic(d, width + ceil(log2 d)) (shifts and adds) and shifted."""
        d = kernel * kernel
        if d == 1:
            return acc
        n = acc + d // 2
        if d & (d - 1) == 0:
            q = n >> (d.bit_length() - 1)
        else:
            from hrn_hw.rtl.arith import const_mul
            m, shift = div_magic(d, width + (d - 1).bit_length())
            q = (const_mul(n + (d << (width - 1)), m) >> shift) - (1 << (width - 1))
        return q[:width].as_signed()

    def work(self, layer, c, h, w):
        """k^2 accumulations and one rounding division per output element."""
        ho, wo = window_out_hw(h, w, layer.kernel, layer.stride, 0)
        return 0, c * ho * wo * (layer.kernel ** 2 + 1)
