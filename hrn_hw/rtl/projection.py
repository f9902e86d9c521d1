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
top level's shared ROMs) at the beat's row: the ROM's read data is registered (a block RAM's
output is slow), then a lane does W multiplies per cycle (each product registered, h from one
of three copies of its register so that no register drives every multiplier), summed by an
adder tree into a product register, then its accumulator, so h is consumed at one beat per
cycle. The accumulators start at half an LSB of c_fmt (the rounding of `convert`), so one cycle converts all coefficients
(shift and saturate). Then the units' energies go through m multipliers, not M * m: the
coefficient registers rotate by one unit per cycle for M cycles (back in place after the
last), and unit u's m coefficients, at the head, are squared (registered), summed in two
registered adder-tree stages into an energy register that shifts the units' energies in, and
the masked argmax compares each new energy with the best so far as it arrives. W = 1 is the
one-word block.
"""

from __future__ import annotations

from math import ceil, sqrt
from types import SimpleNamespace

import numpy as np
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.rtl.basis_rom import reader_ports, read_rows
from hrn_hw.rtl.rows import beats, frame_intake, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

ACC, FLUSH, CONV, SQUARE, DONE = range(5)
MAC_STAGES = 5        # ROM read / h register, ROM data register, products, their sum, accumulate
ENERGY_STAGES = 3     # squares, group sums, energy (registered, timing closure)


def projection_phases(s: int, num_units: int, words: int = 1) -> dict:
    """Cycles per phase of the projection comparator (M * m MAC lanes) for s entries of h at W
    words per beat."""
    return {
        "in": beats(s, words),  # a beat of h into every lane, one per cycle
        "flush": MAC_STAGES,            # ROM read / h, ROM data, products, sum, accumulate; the FSM sees it empty
        "convert": 1,                   # every c_ui shifted and saturated at once
        "square": ENERGY_STAGES,        # the first unit's squares, group sums, energy
        "scan": num_units,              # masked argmax, one unit's energy per cycle as it arrives
        "out": 1,                       # the result handshake
    }


def projection_cycles(s: int, num_units: int, words: int = 1) -> int:
    """Projection comparator latency: ceil(s / W) + M + 10 (s + M + 10 at W = 1)."""
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
        """The phases ACC (MAC lanes), FLUSH, CONV, SQUARE (energies and the masked argmax) and
        DONE (the result)."""
        mod = Module()
        phase, j, take = frame_intake(mod, self.in_valid, self.in_ready, self.rows, 5, ACC)   # j: the beat (row) of h

        busy, accs, coefs, half = self._mac(mod, j, take)
        sc = self._energies(mod, phase, accs, coefs)
        self._sequencer(mod, phase, j, take, busy, sc, accs, half)

        mod.d.comb += [
            self.out_valid.eq(phase == DONE),
            self.sel.eq(sc.best_u),
            self.ok.eq(sc.found),
            self.coef.eq(Cat(*coefs)),
            self.energy.eq(Cat(*sc.energies)),
        ]
        return mod

    def _mac(self, mod: Module, j, take):
        """ACC: the h register, the ROM data register and one multiply-accumulate lane per
        basis vector, W products of the beat's ROM row and h summed per cycle into a product
        register, then the accumulator (which starts at half an LSB of c_fmt). Returns the
        pipeline's busy flag, the accumulators, the coefficient registers and the start value."""
        s, W = self.s, self.words
        hf, bf, cf = self.h_fmt, self.b_fmt, self.c_fmt
        acc_w = hf.width + bf.width + max(1, s.bit_length())
        shift = hf.frac + bf.frac - cf.frac
        half = (1 << (shift - 1)) if shift > 0 and cf.rounding == "rnd" else 0
        v_r, v_b, v_m, v_p = Signal(), Signal(), Signal(), Signal()
        mod.d.sync += [v_r.eq(take), v_b.eq(v_r), v_m.eq(v_b), v_p.eq(v_m)]
        # h at the multipliers: three copies (no reset, reset to 0, reset to all ones: synthesis
        # would merge identical registers), each driving a third of the lanes' multipliers
        h_r = Signal(row_shape(hf.width, W))
        mod.d.sync += h_r.eq(self.in_data)
        ones = (1 << (hf.width * W)) - 1 if W > 1 else -1
        h_b = [Signal(row_shape(hf.width, W), name="h_b0", reset_less=True),
               Signal(row_shape(hf.width, W), name="h_b1"),
               Signal(row_shape(hf.width, W), name="h_b2", init=ones)]
        mod.d.sync += [h.eq(h_r) for h in h_b]

        rows_b = read_rows(mod, self, self.rom, j, take, self.bases, bf.width, W)
        accs, coefs = [], []
        for lane in range(self.M * self.m):
            # the ROM's row registered, the beat's products registered, their sum registered,
            # then the accumulate; the ROM's zeros past s cancel whatever h holds there
            b_r = Signal(len(rows_b[lane]), name=f"b{lane}")
            mod.d.sync += b_r.eq(rows_b[lane])
            prods = [Signal(signed(hf.width + bf.width), name=f"p{lane}_{w}") for w in range(W)]
            h_words = row_words(h_b[lane * len(h_b) // (self.M * self.m)], hf.width, W)
            mod.d.sync += [p.eq(b * h) for p, b, h in zip(prods, row_words(b_r, bf.width, W), h_words)]
            prod = Signal(signed(acc_w), name=f"prod{lane}")
            mod.d.sync += prod.eq(tree_sum(prods))
            acc = Signal(signed(acc_w), name=f"acc{lane}", init=half)
            with mod.If(v_p):
                mod.d.sync += acc.eq(acc + prod)
            accs.append(acc)
            coefs.append(Signal(signed(cf.width), name=f"c{lane}"))
        return v_r | v_b | v_m | v_p, accs, coefs, half

    def _convert(self, acc):
        """convert(acc - half, frac_h + frac_b -> c_fmt) of an accumulator that started at half
        an LSB: the arithmetic shift, then saturation by the bits above the format (no
        comparator)."""
        cf = self.c_fmt
        shift = self.h_fmt.frac + self.b_fmt.frac - cf.frac
        q = acc >> shift if shift > 0 else acc << -shift
        top = q[cf.width - 1:] if cf.signed else q[cf.width:]
        inside = ~top.any() | top.all() if cf.signed else ~top.any()
        return Mux(inside, q[:cf.width], Mux(q[-1], cf.qmin, cf.qmax))

    def _energies(self, mod: Module, phase, accs, coefs):
        """CONV: every c_ui converted at once. SQUARE (counter k = 0 .. M + 2): for k < M the
        coefficient registers rotate by one unit (unit k at the head in cycle k), the head's m
        coefficients are squared into registers, summed in groups (registered), the groups
        summed into the energy register that shifts into e[M-1] (for k = 2 .. M + 1), and the
        masked argmax takes e[M-1], unit k - 3, for k = 3 .. M + 2 (lowest index on ties: u = 0
        .. M-1, replaced only on strictly larger energy). Returns the scan's registers."""
        M, m = self.M, self.m
        k = Signal(range(M + 3))
        with mod.If(phase == CONV):
            mod.d.sync += [c.eq(self._convert(acc)) for acc, c in zip(accs, coefs)]
        with mod.If((phase == SQUARE) & (k < M)):
            mod.d.sync += [coefs[u * m + i].eq(coefs[((u + 1) % M) * m + i]) for u in range(M) for i in range(m)]

        # the multipliers' inputs: a copy of the head's coefficients (loaded as the head is), so
        # that a register next to each multiplier drives it alone
        cw = self.c_fmt.width
        heads = [Signal(signed(cw), name=f"sqin{i}") for i in range(m)]
        with mod.If(phase == CONV):
            mod.d.sync += [x.eq(self._convert(acc)) for x, acc in zip(heads, accs)]
        with mod.Else():
            mod.d.sync += [x.eq(coefs[(1 % M) * m + i]) for i, x in enumerate(heads)]
        squares = [Signal(signed(2 * cw), name=f"sq{i}") for i in range(m)]
        mod.d.sync += [sq.eq(x * x) for sq, x in zip(squares, heads)]
        size = max(1, ceil(sqrt(m)))                    # two adder-tree stages of ~sqrt(m) terms
        groups = []
        for g, lo in enumerate(range(0, m, size)):
            e = tree_sum(squares[lo:lo + size])
            r = Signal(e.shape(), name=f"sqsum{g}")
            mod.d.sync += r.eq(e)
            groups.append(r)
        energies = [Signal(self.e_width, name=f"e{u}") for u in range(M)]
        with mod.If((phase == SQUARE) & (k >= 2) & (k < M + 2)):
            mod.d.sync += [energies[u].eq(energies[u + 1]) for u in range(M - 1)]
            mod.d.sync += energies[M - 1].eq(tree_sum(groups))

        allowed_r = Signal(M)
        scan = Signal(range(max(2, M)))
        best_e = Signal(self.e_width)
        best_u = Signal(range(max(2, M)))
        found = Signal()
        new_e = energies[M - 1]
        with mod.If((phase == SQUARE) & (k >= 3)):
            with mod.If(allowed_r[0] & (~found | (new_e > best_e))):
                mod.d.sync += [found.eq(1), best_u.eq(scan), best_e.eq(new_e)]
            mod.d.sync += [scan.eq(scan + 1), allowed_r.eq(allowed_r >> 1)]
        with mod.If(phase == SQUARE):
            mod.d.sync += k.eq(k + 1)
        with mod.If(phase == CONV):
            mod.d.sync += [k.eq(0), scan.eq(0), found.eq(0), best_u.eq(0), best_e.eq(0)]
        return SimpleNamespace(allowed_r=allowed_r, k=k, best_u=best_u, found=found, energies=energies)

    def _sequencer(self, mod: Module, phase, j, take, busy, sc, accs, half):
        """The phase machine."""
        with mod.If(phase == ACC):
            with mod.If(take):
                mod.d.sync += j.eq(j + 1)
                with mod.If(j == self.rows - 1):
                    mod.d.sync += [phase.eq(FLUSH), sc.allowed_r.eq(self.allowed)]
        with mod.Elif(phase == FLUSH):
            with mod.If(~busy):
                mod.d.sync += phase.eq(CONV)
        with mod.Elif(phase == CONV):
            mod.d.sync += phase.eq(SQUARE)
        with mod.Elif(phase == SQUARE):
            with mod.If(sc.k == self.M + 2):
                mod.d.sync += phase.eq(DONE)
        with mod.Elif(phase == DONE):
            with mod.If(self.out_ready):
                mod.d.sync += [phase.eq(ACC), j.eq(0)] + [a.eq(half) for a in accs]
