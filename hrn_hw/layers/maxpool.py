"""`maxpool`: the maximum over each k x k window (exact; positions beyond a map smaller than the
kernel count as 0)."""

from __future__ import annotations

from hrn_hw.layers.pool import PoolKind
from hrn_hw.layers.registry import register, window_out_hw


@register
class MaxPool(PoolKind):
    name = "maxpool"
    module_class, plain_class = "PoolLayer", "MaxPool2d"
    rtl_commutes_with_act = True     # LeakyReLU is monotonic with f(0) = 0: max(f(x)) = f(max(x))

    def golden(self, layer, x, frac, fmt, sat, name):
        from hrn_hw.fixedpoint import ops
        return ops.maxpool(x, layer.kernel, layer.stride), frac, fmt

    def hls(self, layer, tag, st, r):
        k, s = layer.kernel, layer.stride
        ho, wo = window_out_hw(st.h, st.w, k, s, 0)
        lines = [f"    {st.cur_t} x{st.n}[{st.cur_c * ho * wo}];",
                 f"    hrn::maxpool<{st.cur_c}, {st.h}, {st.w}, {k}, {s}, {ho}, {wo}, {st.cur_t} >({st.cur}, x{st.n});"]
        st.cur, st.h, st.w = f"x{st.n}", ho, wo
        return lines

    def rtl_acc_shape(self, width, kernel):
        from amaranth import signed
        return signed(width)

    def rtl_combine(self, first, val, acc):
        from amaranth import Mux
        return Mux(first | (val > acc), val, acc)

    def rtl_finish(self, acc, kernel, width):
        return acc

    def work(self, layer, c, h, w):
        """k^2 ops per output element."""
        ho, wo = window_out_hw(h, w, layer.kernel, layer.stride, 0)
        return 0, c * ho * wo * layer.kernel ** 2
