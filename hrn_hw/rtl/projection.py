"""Projection comparator: coefficients, energies and the masked argmax (docs/rtl.md).

Bit-exact with `hrn_hw.fixedpoint.ops.project` and `select`:
c_ui = convert(sum_j B_uij h_j, frac_h + frac_b -> c_fmt), e_u = sum_i c_ui^2 (exact),
selected unit = the allowed one of largest energy, lowest index on ties; none allowed: ok = 0
(and sel = 0, as the golden's argmax over an all -1 row).

Interface (clock `clk`, synchronous reset `rst`):
- `allowed[M-1:0]`: the units that may be selected (initialised and unused); sampled when the
  frame's last h beat is accepted.
- input stream `in_valid` / `in_ready` / `in_data`: h_0 .. h_{s-1} (the normaliser's output),
  W words per beat (docs/rtl.md "Multi-word streams"; positions past s are ignored).
- output: `out_valid` / `out_ready` with `sel`, `ok`, `coef` (M*m words of c_fmt, flat, unit
  major: word u*m + i is c_ui) and `energy` (M words, flat); held until the handshake.

One multiply-accumulate lane per basis vector (M * m lanes), each reading its basis vector from
the basis ROMs (`hrn_hw/rtl/basis_rom.py`: its own, or with `rom="external"` a port of the
top level's shared ROMs) at the beat's row: a lane does W multiplies per cycle, summed by an adder tree into its accumulator, so
h is consumed at one beat per cycle. Then one cycle converts all coefficients, one squares and
sums them per unit, and M cycles scan the units for the argmax. W = 1 is the one-word block.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.rtl.basis_rom import reader_ports, read_rows
from hrn_hw.rtl.fixed import convert_expr
from hrn_hw.rtl.rows import beats, mux_select, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

ACC, FLUSH, CONV, SQUARE, SCAN, DONE = range(6)
MAC_STAGES = 3        # ROM read / h register, product register (timing closure), then the accumulate


def projection_phases(s: int, num_units: int, words: int = 1) -> dict:
    """Cycles per phase of the projection comparator (M * m MAC lanes) for s entries of h at W
    words per beat."""
    return {
        "in": beats(s, words),  # a beat of h into every lane, one per cycle
        "flush": 3,                     # ROM read / h register, product register, accumulate; the FSM sees it empty
        "convert": 1,                   # every c_ui rounded and saturated at once
        "square": 1,                    # e_u = sum_i c_ui^2 for every unit at once
        "scan": num_units,              # masked argmax, one unit per cycle
        "out": 1,                       # the result handshake
    }


def projection_cycles(s: int, num_units: int, words: int = 1) -> int:
    """Projection comparator latency: ceil(s / W) + M + 6 (s + M + 6 at W = 1)."""
    return sum(projection_phases(s, num_units, words).values())


class ProjectionComparator(wiring.Component):
    """Parameters: bases [M, m, s] integers in b_fmt (zero rows for missing vectors), and the
    h, basis and coefficient formats, and words (W per beat, default 1)."""

    def __init__(self, bases: np.ndarray, h_fmt: Fmt, b_fmt: Fmt, c_fmt: Fmt, words: int = 1, rom: str = "internal"):
        bases = np.asarray(bases, dtype=np.int64)
        M, m, s = bases.shape
        if bases.min(initial=0) < b_fmt.qmin or bases.max(initial=0) > b_fmt.qmax:
            raise ValueError("bases outside the basis format")
        if int(words) < 1:
            raise ValueError("words must be >= 1")
        self.bases, self.M, self.m, self.s = bases, M, m, s
        self.words, self.rows = int(words), beats(s, int(words))
        self.h_fmt, self.b_fmt, self.c_fmt = h_fmt, b_fmt, c_fmt
        self.e_width = 2 * c_fmt.width + max(1, m.bit_length())
        self.rom = rom
        super().__init__({
            **reader_ports(rom, bases, b_fmt.width, self.words),
            "allowed": In(M),
            **stream_in("in", row_shape(h_fmt.width, self.words)),
            **stream_out("out", fields={"sel": range(max(2, M)), "ok": 1, "coef": M * m * c_fmt.width,
                                        "energy": M * self.e_width}),
        })

    def elaborate(self, platform):
        """The phases ACC (MAC lanes), CONV, SQUARE, SCAN (masked argmax) and the result."""
        mod = Module()
        bw = max(1, self.rows.bit_length())

        phase = Signal(range(6))
        j = Signal(bw)                         # the beat (row) of h
        take = self.in_valid & self.in_ready
        mod.d.comb += self.in_ready.eq(phase == ACC)

        v_r, accs, coefs = self._mac(mod, j, take)
        energies = self._convert_square(mod, phase, accs, coefs)
        sc = self._scan_regs(mod, energies)
        self._sequencer(mod, phase, j, take, v_r, sc, accs)

        mod.d.comb += [
            self.out_valid.eq(phase == DONE),
            self.sel.eq(sc.best_u),
            self.ok.eq(sc.found),
            self.coef.eq(Cat(*coefs)),
            self.energy.eq(Cat(*energies)),
        ]
        return mod

    def _mac(self, mod: Module, j, take):
        """ACC: the h register and one multiply-accumulate lane per basis vector, W products of
        the beat's ROM row and h summed per cycle. Returns v_r, the accumulators, the
        coefficient registers."""
        s, W = self.s, self.words
        hf, bf, cf = self.h_fmt, self.b_fmt, self.c_fmt
        acc_w = hf.width + bf.width + max(1, s.bit_length())
        h_r = Signal(row_shape(hf.width, W))
        v_r = Signal()
        mod.d.sync += [h_r.eq(self.in_data), v_r.eq(take)]
        h_words = row_words(h_r, hf.width, W)

        rows_b = read_rows(mod, self, self.rom, j, take, self.bases, bf.width, W)
        v_p = Signal()                  # the product registers hold a beat's products
        mod.d.sync += v_p.eq(v_r)
        accs, coefs = [], []
        for lane in range(self.M * self.m):
            # the beat's products (and their sum) in a register, then the accumulate; the ROM's
            # zeros past s cancel whatever h holds there
            prod = Signal(signed(acc_w), name=f"prod{lane}")
            mod.d.sync += prod.eq(tree_sum(b * h for b, h in zip(row_words(rows_b[lane], bf.width, W), h_words)))
            acc = Signal(signed(acc_w), name=f"acc{lane}")
            with mod.If(v_p):
                mod.d.sync += acc.eq(acc + prod)
            accs.append(acc)
            coefs.append(Signal(signed(cf.width), name=f"c{lane}"))
        return v_r | v_p, accs, coefs

    def _convert_square(self, mod: Module, phase, accs, coefs):
        """CONV: every c_ui = convert(acc, frac_h + frac_b -> c_fmt) at once; SQUARE: e_u =
        sum_i c_ui^2 for every unit at once. Returns the energy registers."""
        M, m = self.M, self.m
        with mod.If(phase == CONV):
            mod.d.sync += [c.eq(convert_expr(acc, self.h_fmt.frac + self.b_fmt.frac, self.c_fmt))
                           for acc, c in zip(accs, coefs)]

        energies = [Signal(self.e_width, name=f"e{u}") for u in range(M)]
        with mod.If(phase == SQUARE):
            for u in range(M):
                terms = [coefs[u * m + i] * coefs[u * m + i] for i in range(m)]
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
                mod.d.sync += energies[u].eq(total)
        return energies

    def _scan_regs(self, mod: Module, energies):
        """SCAN's registers: the allowed mask, the unit scanned, the best so far; its energy
        and whether it is allowed (0 past M-1)."""
        M = self.M
        allowed_r = Signal(M)
        scan = Signal(range(M + 1))
        best_e = Signal(self.e_width)
        best_u = Signal(range(max(2, M)))
        found = Signal()
        cur_e = Signal(self.e_width)
        cur_ok = Signal()
        mod.d.comb += [
            cur_e.eq(Mux(scan < M, mux_select(energies, scan), 0)),
            cur_ok.eq(Mux(scan < M, (allowed_r >> scan)[0], 0)),
        ]
        return SimpleNamespace(allowed_r=allowed_r, scan=scan, best_e=best_e, best_u=best_u, found=found,
                               cur_e=cur_e, cur_ok=cur_ok)

    def _sequencer(self, mod: Module, phase, j, take, v_r, sc, accs):
        """The phase machine; SCAN is the masked argmax, lowest index on ties (u = 0 .. M-1,
        replaced only on strictly larger energy)."""
        scan = sc.scan
        with mod.If(phase == ACC):
            with mod.If(take):
                mod.d.sync += j.eq(j + 1)
                with mod.If(j == self.rows - 1):
                    mod.d.sync += [phase.eq(FLUSH), sc.allowed_r.eq(self.allowed)]
        with mod.Elif(phase == FLUSH):
            with mod.If(~v_r):
                mod.d.sync += phase.eq(CONV)
        with mod.Elif(phase == CONV):
            mod.d.sync += phase.eq(SQUARE)
        with mod.Elif(phase == SQUARE):
            mod.d.sync += [phase.eq(SCAN), scan.eq(0), sc.found.eq(0), sc.best_u.eq(0), sc.best_e.eq(0)]
        with mod.Elif(phase == SCAN):
            with mod.If(sc.cur_ok & (~sc.found | (sc.cur_e > sc.best_e))):
                mod.d.sync += [sc.found.eq(1), sc.best_u.eq(scan), sc.best_e.eq(sc.cur_e)]
            mod.d.sync += scan.eq(scan + 1)
            with mod.If(scan == self.M - 1):
                mod.d.sync += phase.eq(DONE)
        with mod.Elif(phase == DONE):
            with mod.If(self.out_ready):
                mod.d.sync += [phase.eq(ACC), j.eq(0)] + [a.eq(0) for a in accs]
