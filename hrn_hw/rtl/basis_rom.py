"""The basis ROMs, held once: every basis vector B_ui in a synchronous ROM of rows of W words
(ROM u*m + i, row r = B_ui[rW .. rW + W - 1], zero past s), with one read port per reader.

The projection comparator reads them while h streams in, the residue block while h is
replayed; each block either holds its own copy (`rom="internal"`, standalone use and block
testbenches) or takes a port of one shared `BasisRom` (`rom="external"`, the top level), with
the same ports either way: `rom_addr`, `rom_en` out of the block, `rom_data` (all M*m rows of
that address, flat: row of ROM k at bits [k*R, (k+1)*R), R = W x basis width) into it, one
cycle after the address (synchronous read).
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.rtl.rows import beats, row_init, row_shape


def rom_ports(rows: int, vectors: int, row_bits: int, port: int | None = None, reader: bool = True) -> dict:
    """Signature members of one read port: (addr, en, data) named rom_* on a reader block, or
    addr<p>, en<p>, data<p> on the ROM itself (`port` p)."""
    suffix, prefix = ("", "rom_") if port is None else (str(port), "")
    flip = (lambda x: x) if reader else (lambda x: x.flip())
    return {f"{prefix}addr{suffix}": flip(Out(range(max(2, rows)))), f"{prefix}en{suffix}": flip(Out(1)),
            f"{prefix}data{suffix}": flip(In(vectors * row_bits))}


class BasisRom(wiring.Component):
    """bases [M, m, s] integers in b_fmt's width, `words` W per row, `ports` read ports."""

    def __init__(self, bases: np.ndarray, b_width: int, words: int = 1, ports: int = 1):
        self.bases = np.asarray(bases, dtype=np.int64)
        M, m, s = self.bases.shape
        self.b_width, self.words, self.ports = int(b_width), int(words), int(ports)
        self.rows, self.vectors = beats(s, self.words), M * m
        self.row_bits = self.b_width * self.words
        members = {}
        for p in range(self.ports):
            members.update(rom_ports(self.rows, self.vectors, self.row_bits, port=p, reader=False))
        super().__init__(members)

    def elaborate(self, platform):
        mod = Module()
        m = self.bases.shape[1]
        reads = [[] for _ in range(self.ports)]
        for k in range(self.vectors):
            u, i = divmod(k, m)
            rom = memory.Memory(shape=row_shape(self.b_width, self.words), depth=self.rows,
                                init=row_init(self.bases[u, i], self.b_width, self.words))
            mod.submodules[f"rom{k}"] = rom
            for p in range(self.ports):
                rd = rom.read_port()
                mod.d.comb += [rd.addr.eq(getattr(self, f"addr{p}")), rd.en.eq(getattr(self, f"en{p}"))]
                reads[p].append(rd.data)
        for p in range(self.ports):
            mod.d.comb += getattr(self, f"data{p}").eq(Cat(*reads[p]))
        return mod


def reader_ports(mode: str, bases, b_width: int, words: int) -> dict:
    """A reader block's signature members for its basis port: rom_addr, rom_en, rom_data when
    the ROM is external, none when the block holds its own."""
    if mode not in ("internal", "external"):
        raise ValueError(f"rom must be 'internal' or 'external', got {mode!r}")
    if mode == "internal":
        return {}
    M, m, s = np.shape(bases)
    return rom_ports(beats(s, words), M * m, int(b_width) * int(words))


def read_rows(mod: Module, block, mode: str, addr, en, bases, b_width: int, words: int) -> list:
    """Read every basis vector's row at `addr` (when `en`): the M*m rows, one cycle later, from
    the block's own ROM ("internal") or through its rom_* ports ("external")."""
    if mode == "internal":
        mod.submodules.basis = rom = BasisRom(bases, b_width, words, ports=1)
        mod.d.comb += [rom.addr0.eq(addr), rom.en0.eq(en)]
        data = rom.data0
    else:
        mod.d.comb += [block.rom_addr.eq(addr), block.rom_en.eq(en)]
        data = block.rom_data
    row_bits = int(b_width) * int(words)
    return [data[k * row_bits:(k + 1) * row_bits] for k in range(int(np.prod(np.shape(bases)[:2])))]
