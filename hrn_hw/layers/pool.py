"""What the pooling kinds share (`maxpool`, `avgpool`): parameters kernel (default 2) and stride
(default: the kernel), the window rule (zero padding only bottom/right, when the map is smaller
than the kernel), the IR layer `PoolQ` and its manifest entry, and the conv engine's pool stage:
kernel^2 reads of the output memory per output word, reduced by the kind's `rtl_combine` into a
register (`rtl_acc_shape`) and finished by `rtl_finish` before the output register."""

from __future__ import annotations

from dataclasses import dataclass

from hrn_hw.layers.registry import LayerKind, int_param, window_out_hw


@dataclass
class PoolQ:
    kernel: int
    stride: int
    kind: str = "maxpool"


class PoolKind(LayerKind):
    params = {"kernel": 2, "stride": None}      # stride None: the kernel size
    rtl_stage = "pool"
    unit_stage = 3               # after the activation (the conv engine activates, then pools)
    rtl_acc_name = "mx"          # the RTL's running-reduction register (Verilog name prefix)
    rtl_commutes_with_act = False   # the engine activates before it pools: may it run act after pool?
    module_class = ""            # its reference module in hrn_hw.layers.modules
    plain_class = ""             # its standard torch.nn module (the vanilla CNN's)

    @property
    def ir_kind(self):
        return self.name

    def check(self, spec, where):
        kernel = int_param(spec, "kernel", 2, where=where)
        stride = kernel if spec.get("stride") is None else int_param(spec, "stride", where=where)
        return {"kernel": kernel, "stride": stride}

    def module(self, p, channels):
        from hrn_hw.layers import modules
        return getattr(modules, self.module_class)(p["kernel"], p["stride"]), channels

    def plain_module(self, p, channels):
        import torch.nn as nn
        return getattr(nn, self.plain_class)(p["kernel"], p["stride"]), channels

    def float_forward(self, fl, y, ranges, key):
        """The reference module's pooling (padded bottom/right to the kernel) on the float map."""
        return self.module({"kernel": fl.kernel, "stride": fl.stride}, 0)[0](y)

    def fold(self, mods, j, folded, unit):
        folded.append(PoolQ(mods[j].kernel, mods[j].stride, self.name))
        return 1

    def quantize(self, fl, name, q):
        return PoolQ(fl.kernel, fl.stride, self.name)

    def to_manifest(self, layer):
        return {"type": self.name, "kernel": layer.kernel, "stride": layer.stride}

    def from_manifest(self, d, arrays, key):
        return PoolQ(int(d["kernel"]), int(d["stride"]), self.name)

    def out_shape(self, layer, c, h, w):
        return (c, *window_out_hw(h, w, layer.kernel, layer.stride, 0))

    def rtl_out_reads(self, layer):
        return layer.kernel * layer.kernel

    def rtl_acc_shape(self, width: int, kernel: int):
        """Amaranth shape of the running reduction of kernel^2 words of `width` bits."""
        raise NotImplementedError

    def rtl_combine(self, first, val, acc):
        """The running reduction after word `val` (first: the window's first word)."""
        raise NotImplementedError

    def rtl_finish(self, acc, kernel: int, width: int):
        """The window's output word (`width` bits, signed) from its complete reduction."""
        raise NotImplementedError
