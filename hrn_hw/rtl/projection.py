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

import numpy as np
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.rtl.basis_rom import reader_ports, read_rows
from hrn_hw.rtl.fixed import convert_expr
from hrn_hw.rtl.rows import beats, mux_select, row_shape, row_words, tree_sum

ACC, FLUSH, CONV, SQUARE, SCAN, DONE = range(6)
MAC_STAGES = 2        # ROM read / h register, then the accumulate


def projection_phases(s: int, num_units: int, words: int = 1) -> dict:
    """Cycles per phase of the projection comparator (M * m MAC lanes) for s entries of h at W
    words per beat."""
    return {
        "in": beats(s, words),  # a beat of h into every lane, one per cycle
        "flush": 2,                     # ROM read / h register, accumulate; the FSM sees it empty
        "convert": 1,                   # every c_ui rounded and saturated at once
        "square": 1,                    # e_u = sum_i c_ui^2 for every unit at once
        "scan": num_units,              # masked argmax, one unit per cycle
        "out": 1,                       # the result handshake
    }


def projection_cycles(s: int, num_units: int, words: int = 1) -> int:
    """Projection comparator latency: ceil(s / W) + M + 5 (s + M + 5 at W = 1)."""
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
            "in_valid": In(1),
            "in_ready": Out(1),
            "in_data": In(row_shape(h_fmt.width, self.words)),
            "out_valid": Out(1),
            "out_ready": In(1),
            "sel": Out(range(max(2, M))),
            "ok": Out(1),
            "coef": Out(M * m * c_fmt.width),
            "energy": Out(M * self.e_width),
        })

    def elaborate(self, platform):
        mod = Module()
        M, m, s, W, rows = self.M, self.m, self.s, self.words, self.rows
        hf, bf, cf = self.h_fmt, self.b_fmt, self.c_fmt
        lanes = M * m
        bw = max(1, rows.bit_length())
        acc_w = hf.width + bf.width + max(1, s.bit_length())

        phase = Signal(range(6))
        j = Signal(bw)                         # the beat (row) of h
        take = self.in_valid & self.in_ready
        mod.d.comb += self.in_ready.eq(phase == ACC)

        h_r = Signal(row_shape(hf.width, W))
        v_r = Signal()
        mod.d.sync += [h_r.eq(self.in_data), v_r.eq(take)]
        h_words = row_words(h_r, hf.width, W)

        rows_b = read_rows(mod, self, self.rom, j, take, self.bases, bf.width, W)
        accs, coefs = [], []
        for lane in range(lanes):
            acc = Signal(signed(acc_w), name=f"acc{lane}")
            with mod.If(v_r):   # the ROM's zeros past s cancel whatever h holds there
                mod.d.sync += acc.eq(acc + tree_sum(
                    b * h for b, h in zip(row_words(rows_b[lane], bf.width, W), h_words)))
            accs.append(acc)
            coefs.append(Signal(signed(cf.width), name=f"c{lane}"))

        # convert(acc, frac_h + frac_b -> c_fmt): round per c_fmt, then saturate
        with mod.If(phase == CONV):
            mod.d.sync += [c.eq(convert_expr(acc, hf.frac + bf.frac, cf)) for acc, c in zip(accs, coefs)]

        energies = [Signal(self.e_width, name=f"e{u}") for u in range(M)]
        with mod.If(phase == SQUARE):
            for u in range(M):
                terms = [coefs[u * m + i] * coefs[u * m + i] for i in range(m)]
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
                mod.d.sync += energies[u].eq(total)

        # masked argmax, lowest index on ties: scan u = 0 .. M-1, replace only on strictly larger
        allowed_r = Signal(M)
        scan = Signal(range(M + 1))
        best_e = Signal(self.e_width)
        best_u = Signal(range(max(2, M)))
        found = Signal()
        e_arr = [e for e in energies]
        cur_e = Signal(self.e_width)
        cur_ok = Signal()
        mod.d.comb += [
            cur_e.eq(Mux(scan < M, mux_select(e_arr, scan), 0)),
            cur_ok.eq(Mux(scan < M, (allowed_r >> scan)[0], 0)),
        ]

        with mod.If(phase == ACC):
            with mod.If(take):
                mod.d.sync += j.eq(j + 1)
                with mod.If(j == rows - 1):
                    mod.d.sync += [phase.eq(FLUSH), allowed_r.eq(self.allowed)]
        with mod.Elif(phase == FLUSH):
            with mod.If(~v_r):
                mod.d.sync += phase.eq(CONV)
        with mod.Elif(phase == CONV):
            mod.d.sync += phase.eq(SQUARE)
        with mod.Elif(phase == SQUARE):
            mod.d.sync += [phase.eq(SCAN), scan.eq(0), found.eq(0), best_u.eq(0), best_e.eq(0)]
        with mod.Elif(phase == SCAN):
            with mod.If(cur_ok & (~found | (cur_e > best_e))):
                mod.d.sync += [found.eq(1), best_u.eq(scan), best_e.eq(cur_e)]
            mod.d.sync += scan.eq(scan + 1)
            with mod.If(scan == M - 1):
                mod.d.sync += phase.eq(DONE)
        with mod.Elif(phase == DONE):
            with mod.If(self.out_ready):
                mod.d.sync += [phase.eq(ACC), j.eq(0)] + [a.eq(0) for a in accs]

        mod.d.comb += [
            self.out_valid.eq(phase == DONE),
            self.sel.eq(best_u),
            self.ok.eq(found),
            self.coef.eq(Cat(*coefs)),
            self.energy.eq(Cat(*energies)),
        ]
        return mod


