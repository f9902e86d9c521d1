"""Block-RAM shapes of the ECP5 (DP16KD, 18 Kb): a ROM deeper than 512 rows that Yosys builds
as a depth cascade of 512 x 36 blocks joins their outputs with a LUT multiplexer after the
block RAMs' ~5.8 ns clock-to-out, which limited the head engine to 81 MHz (docs/rtl.md,
"Timing closure"). `sliced_rom` cuts such a ROM into bit slices, each as wide as the widest
DP16KD configuration that holds all its rows, so every slice is one block RAM and the read data
is their concatenation, with no multiplexer."""

from __future__ import annotations

from amaranth import Cat, Module
from amaranth.lib import memory

# DP16KD read widths by depth (rows, bits), deepest first
DP16KD_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def slice_width(depth: int) -> int | None:
    """Bits per slice for a ROM of `depth` rows: the widest DP16KD shape at least that deep
    (None when deeper than one block RAM's deepest shape)."""
    fits = [w for d, w in DP16KD_SHAPES if d >= depth]
    return max(fits) if fits else None


def sliced_rom(mod: Module, name: str, width: int, init: list, addr, en=None):
    """A ROM of len(init) rows of `width` bits read at `addr` (synchronous; `en` its enable,
    always when None), as bit slices of one block RAM each when that needs more than one; the
    submodules are `name` (one memory) or `name`_s<k>. Returns the read data (unsigned,
    `width` bits; init words are taken mod 2^width)."""
    depth = max(2, len(init))
    words = [int(v) & ((1 << width) - 1) for v in init] + [0] * (depth - len(init))
    sw = slice_width(depth)
    if sw is None or sw >= width or depth <= 512:
        parts = [(f"{name}", 0, width)]
    else:
        parts = [(f"{name}_s{k}", lo, min(sw, width - lo)) for k, lo in enumerate(range(0, width, sw))]
    data = []
    for sub, lo, w in parts:
        mem = memory.Memory(shape=w, depth=depth, init=[(v >> lo) & ((1 << w) - 1) for v in words])
        mod.submodules[sub] = mem
        port = mem.read_port()
        mod.d.comb += port.addr.eq(addr)
        if en is not None:
            mod.d.comb += port.en.eq(en)
        data.append(port.data)
    return Cat(*data)
