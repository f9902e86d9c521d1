"""Residue, stop rule and embedding accumulator (docs/rtl.md, "Residue, embedding and heads").

Bit-exact with `hrn_hw.fixedpoint.ops.residue` and the embedding of `hrn_hw.golden.run`:
r_j = convert(h_j << (fb + fc - fh) - sum_i B_uij c_i, frac fb + fc -> residue format),
E_r = sum_j r_j^2 (exact), stop = E_r < stop_threshold, emb_acc_j += r_j (exact, per sample),
and on a finish command the embedding convert(emb_acc_j, frac_r -> emb_fmt), s words.

Parameter `words` W (docs/rtl.md "Multi-word streams"): h, the residue monitor and the
embedding move W words per beat (ceil(s / W) beats a frame, positions past s zero), every
position has its own m multipliers, and the memories hold rows of W words. W = 1 is the
one-word block.

Interface (clock `clk`, synchronous reset `rst`):
- `sel` (the selected unit) and `coef` (its m coefficients, flat, word i is c_i, c_fmt):
  sampled with the frame's first h.
- input stream `in_valid` / `in_ready` / `in_data`: h_0 .. h_{s-1} (the h format), one
  frame per routing step (positions past s are ignored).
- result handshake `out_valid` / `out_ready` with `stop` and `energy` (sum r^2, frac
  2 frac_r), held until the handshake, one per frame.
- `r_valid` / `r_data` / `r_index`: a monitor of every residue beat as it is computed
  (`r_index` the beat's row; no back-pressure; for tests and probes).
- finish command `fin_valid` / `fin_ready` (accepted only between frames), then the
  embedding stream `emb_valid` / `emb_ready` / `emb_data` / `emb_last` (s words, emb_fmt,
  with back-pressure). Each accumulator word is written back to zero as it is read out, so
  the next sample starts from a zero memory (the memory is zero after reset).

The basis ROMs are `hrn_hw/rtl/basis_rom.py`'s (the block's own, or with `rom="external"` a
port of the top level's ROMs, shared with the projection comparator): the residue reads every
vector's row at the beat and keeps the selected unit's m rows (a mux).

Pipeline (no stall inside a frame): ROM read and h register; ROM data register; the
selected unit's rows (registered); the m products (registered); their sum and the aligned
difference (registered); convert (round, saturate; registered) and the embedding
read-modify-write (the accumulator memory is read two stages ahead, its read data
registered); the squares (registered); the energy accumulate. The embedding read-out is a
three-stage pipeline with a common stall (memory read, read-data register, convert register),
row 0 read while idle and row 1 with the finish handshake, so its first beat leaves two
cycles after the handshake.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.rtl.basis_rom import reader_ports, read_rows
from hrn_hw.rtl.fixed import convert_expr
from hrn_hw.rtl.rows import beats, delay_line, frame_intake, frame_row_words, mux_select, pack_words, row_init, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

RUN, FLUSH, DONE, EMB = range(4)
PIPE_STAGES = 7       # ROM read / h register, ROM data register, selected rows, products, difference, residue, squares
EMB_STAGES = 3        # embedding read-out: memory read, read-data register, output register (convert);
                      # rows 0 and 1 are read ahead (before and with the finish handshake)


def residue_params(qm, words: int = 1) -> dict:
    """Residue parameters of a QuantModel (the export's bases, formats, threshold and depth)."""
    return {"bases": qm.bases, "h_fmt": qm.h_fmt, "b_fmt": qm.basis_fmt, "c_fmt": qm.coef_fmt,
            "r_fmt": qm.residue_fmt, "emb_fmt": qm.emb_fmt, "stop_threshold": int(qm.stop_threshold),
            "max_steps": int(qm.d), "words": int(words)}


def residue_phases(s: int, words: int = 1) -> dict:
    """Cycles per phase of one residue frame (first h handshake to the result handshake)."""
    return {
        "in": beats(s, words),      # h, one beat (W words) per cycle
        "pipeline": PIPE_STAGES,    # ROM read, ROM register, row select, products, difference, convert, squares
        "drain": 1,                 # the last square-accumulate; the FSM sees the pipeline empty
        "out": 1,                   # the result handshake (stop, energy)
    }


def residue_cycles(s: int, words: int = 1) -> int:
    """Residue frame latency: ceil(s / W) + 9 (s + 9 at W = 1)."""
    return sum(residue_phases(s, words).values())


def embedding_cycles(s: int, words: int = 1) -> int:
    """Finish command handshake to the last embedding beat, inclusive: ceil(s / W) + 2 (one
    cycle to enter the read-out, one cycle for the output register, ceil(s / W) beats; the
    read-out pipeline's memory read and read-data register of rows 0 and 1 happen before and
    with the finish handshake: row 0 is read whenever the block is idle)."""
    return beats(s, words) + EMB_STAGES - 1


class Residue(wiring.Component):
    """Parameters: bases [M, m, s] raw integers in b_fmt; the h, basis, coefficient, residue
    and embedding formats; stop_threshold (T: stop iff sum r^2 < T); max_steps (d, sizes the
    embedding accumulator: |emb_acc| <= d * 2^(w_r - 1)); words (W per beat, default 1)."""

    def __init__(self, bases: np.ndarray, h_fmt: Fmt, b_fmt: Fmt, c_fmt: Fmt, r_fmt: Fmt,
                 emb_fmt: Fmt, stop_threshold: int, max_steps: int, words: int = 1, rom: str = "internal"):
        bases = np.asarray(bases, dtype=np.int64)
        M, m, s = bases.shape
        if bases.min(initial=0) < b_fmt.qmin or bases.max(initial=0) > b_fmt.qmax:
            raise ValueError("bases outside the basis format")
        if b_fmt.frac + c_fmt.frac < h_fmt.frac:
            raise ValueError("basis + coefficient fraction bits must cover the hash's")
        if not (h_fmt.signed and r_fmt.signed):
            raise ValueError("residue: h and residue formats must be signed")
        if int(words) < 1:
            raise ValueError("words must be >= 1")
        self.bases, self.M, self.m, self.s = bases, M, m, s
        self.words, self.rows = int(words), beats(s, int(words))
        self.h_fmt, self.b_fmt, self.c_fmt, self.r_fmt, self.emb_fmt = h_fmt, b_fmt, c_fmt, r_fmt, emb_fmt
        self.stop_threshold, self.max_steps = int(stop_threshold), int(max_steps)
        self.acc_width = r_fmt.width + max(1, self.max_steps.bit_length())
        self.e_width = 2 * r_fmt.width + max(1, s.bit_length())
        W = self.words
        self.rom = rom
        super().__init__(self._ports())

    def _ports(self) -> dict:
        """The signature's members (a subclass may change them)."""
        M, m, W = self.M, self.m, self.words
        return {
            **reader_ports(self.rom, self.bases, self.b_fmt.width, W),
            "sel": In(range(max(2, M))),
            "coef": In(m * self.c_fmt.width),
            **stream_in("in", row_shape(self.h_fmt.width, W)),
            **stream_out("out", fields={"stop": 1, "energy": self.e_width}),
            **stream_out("r", row_shape(self.r_fmt.width, W), ready=False, fields={"r_index": range(max(2, self.rows))}),
            **stream_in("fin"),
            **stream_out("emb", row_shape(self.emb_fmt.width, W, self.emb_fmt.signed), last=True),
        }

    def elaborate(self, platform):
        """The frame operands, the four pipeline stages, the embedding read-out, the phases."""
        mod = Module()
        phase, j, take = frame_intake(mod, self.in_valid, self.in_ready, self.rows, 4, RUN)   # j: the beat (row) of h
        ab = len(j)

        coef_r, sel_now = self._operands(mod, j, take)
        v1s, v2, j1c, j2, diffs = self._difference(mod, j, take, sel_now, coef_r, ab)
        v3, j3, rs = self._convert(mod, v2, j2, diffs, ab)
        st = self._accumulate(mod, phase, v1s[-1], j1c, v3, j3, rs, ab)
        self._outputs(mod, phase, j, st)
        self._sequencer(mod, phase, j, take, (*v1s, v2, v3, st.v4), st)
        return mod

    def _operands(self, mod: Module, j, take):
        """The frame operands sel and coef, sampled with the first h. Returns coef_r and the
        selected unit of the current beat."""
        sel_r = Signal.like(self.sel)
        coef_r = Signal.like(self.coef)
        sel_now = Mux(j == 0, self.sel, sel_r)
        with mod.If(take & (j == 0)):
            mod.d.sync += [sel_r.eq(self.sel), coef_r.eq(self.coef)]
        return coef_r, sel_now

    def _difference(self, mod: Module, j, take, sel_now, coef_r, ab: int):
        """Stages 1 and 2: ROM read (projection layout: ROM u*m + i holds B_ui, rows of W) and h
        register; diff = h << (frac - fh) - sum_i B_i c_i (exact), per position."""
        M, m, W = self.M, self.m, self.words
        hf, bf, cf = self.h_fmt, self.b_fmt, self.c_fmt
        frac = bf.frac + cf.frac
        h1 = Signal(row_shape(hf.width, W))
        v1, j1 = Signal(), Signal(ab)
        h_in = frame_row_words(self.in_data, hf.width, W, self.s, j)
        mod.d.sync += [h1.eq(pack_words(mod, h_in, hf.width, name="h_in")), v1.eq(take), j1.eq(j)]
        rom_data = read_rows(mod, self, self.rom, j, take, self.bases, bf.width, W)
        sel1, sel1a = Signal.like(self.sel), Signal.like(self.sel)
        mod.d.sync += [sel1.eq(sel_now), sel1a.eq(sel1)]
        # stage 1a: the ROM read data registered (block-RAM clock-to-out, timing closure)
        rom_regs = [Signal(len(d), name=f"rom{k}") for k, d in enumerate(rom_data)]
        mod.d.sync += [r.eq(d) for r, d in zip(rom_regs, rom_data)]

        # stage 1b: the selected unit's m rows and h registered; stage 1c: the m products per
        # position registered (timing closure); stage 2: their sum and the aligned difference
        b_rows = [mux_select([rom_regs[u * m + i] for u in range(M)], sel1a) if M > 1 else rom_regs[i]
                  for i in range(m)]
        b_regs = [Signal(row_shape(bf.width, W), name=f"bsel{i}") for i in range(m)]
        h1c = delay_line(mod, h1, 3)[-1]
        mod.d.sync += [r.eq(b) for r, b in zip(b_regs, b_rows)]
        b_words = [row_words(b, bf.width, W) for b in b_regs]
        # the coefficients copied per position (one register per multiplier: the multipliers
        # are placed apart; the copy is ready before the first beat's products)
        c_all = []
        for p in range(W):
            c_p = [Signal(signed(cf.width), name=f"coef{i}_{p}") for i in range(m)]
            mod.d.sync += [cp.eq(coef_r.word_select(i, cf.width).as_signed()) for i, cp in enumerate(c_p)]
            c_all.append(c_p)
        dw = max(hf.width + frac - hf.frac, bf.width + cf.width + max(1, m.bit_length())) + 2
        diffs = []
        for p, h in enumerate(row_words(h1c, hf.width, W)):
            prods = [Signal(signed(bf.width + cf.width), name=f"bc{i}_{p}") for i in range(m)]
            mod.d.sync += [pr.eq(b_words[i][p] * c_all[p][i]) for i, pr in enumerate(prods)]
            diff = Signal(signed(dw), name=f"diff{p}")
            mod.d.sync += diff.eq((h << (frac - hf.frac)) - tree_sum(prods))
            diffs.append(diff)
        v1s, j1c = delay_line(mod, v1, 3), delay_line(mod, j1, 3)[-1]
        v2, j2 = Signal(), Signal(ab)
        mod.d.sync += [v2.eq(v1s[-1]), j2.eq(j1c)]
        return (v1, *v1s), v2, j1c, j2, diffs

    def _convert(self, mod: Module, v2, j2, diffs, ab: int):
        """Stage 3: r = convert(diff, frac -> r_fmt), and the r monitor. Returns v3, j3, r."""
        rf = self.r_fmt
        rs = []
        for p, diff in enumerate(diffs):
            r = Signal(signed(rf.width), name=f"r{p}")
            mod.d.sync += r.eq(convert_expr(diff, self.b_fmt.frac + self.c_fmt.frac, rf))
            rs.append(r)
        v3, j3 = Signal(), Signal(ab)
        mod.d.sync += [v3.eq(v2), j3.eq(j2)]
        mod.d.comb += [self.r_valid.eq(v3), self.r_data.eq(Cat(*rs)), self.r_index.eq(j3)]
        return v3, j3, rs

    def _accumulate(self, mod: Module, phase, v1c, j1c, v3, j3, rs, ab: int):
        """Stage 3: emb_acc[j] += r (the accumulator is read two stages ahead, at stage 1c's
        row, and its read data registered); stage 4: the squares r^2 (registered); then sum
        r^2 accumulated. In EMB the accumulator's read-out (address counter, memory read,
        read-data register, convert register, a common stall under back-pressure), each row
        written back to zero as it is handed over. Outside EMB the read address is stage 1c's
        row when that stage is valid, else row 0 (row 1 with the finish handshake): the
        read-out starts with rows 0 and 1 in flight. Returns energy, emb_r (the
        converted row), v4, a, va, vb, vc, ac (the output's row), advance."""
        W, rows, rf = self.words, self.rows, self.r_fmt
        energy = Signal(self.e_width)
        emb = memory.Memory(shape=row_shape(self.acc_width, W), depth=rows, init=[])
        mod.submodules.emb = emb
        ewr = emb.write_port()
        erd = emb.read_port()
        acc_r = Signal(row_shape(self.acc_width, W))
        acc = row_words(acc_r, self.acc_width, W)

        a = Signal(ab)
        va, aa = Signal(), Signal(ab)          # read data (erd.data) of row aa
        vb, ab_ = Signal(), Signal(ab)         # acc_r
        vc, ac = Signal(), Signal(ab)          # emb_r
        advance = ~vc | self.emb_ready
        with mod.If(phase == EMB):
            mod.d.comb += [erd.addr.eq(a), erd.en.eq(advance)]
            with mod.If(advance):
                mod.d.sync += acc_r.eq(erd.data)
        with mod.Else():
            fin_take = self.fin_valid & self.fin_ready
            mod.d.comb += [erd.addr.eq(Mux(v1c, j1c, fin_take)), erd.en.eq(1)]
            mod.d.sync += acc_r.eq(erd.data)
        sqs = [Signal(2 * rf.width, name=f"rsq{p}") for p in range(W)]
        v4 = Signal()
        mod.d.sync += [v4.eq(v3)] + [q.eq(r * r) for q, r in zip(sqs, rs)]
        with mod.If(v4):
            mod.d.sync += energy.eq(energy + tree_sum(sqs))
        with mod.If(v3):
            mod.d.comb += [ewr.addr.eq(j3), ewr.en.eq(1),
                           ewr.data.eq(pack_words(mod, [x + r for x, r in zip(acc, rs)], self.acc_width,
                                                  name="acc_new"))]
        with mod.Elif((phase == EMB) & vc & self.emb_ready):
            mod.d.comb += [ewr.addr.eq(ac), ewr.data.eq(0), ewr.en.eq(1)]
        ef = self.emb_fmt
        emb_r = Signal(row_shape(ef.width, W, ef.signed))
        emb_row = pack_words(mod, [convert_expr(x, rf.frac, ef) for x in acc], ef.width, ef.signed, "emb_out")
        with mod.If((phase == EMB) & advance):
            mod.d.sync += [vb.eq(va), ab_.eq(aa), vc.eq(vb), ac.eq(ab_), emb_r.eq(emb_row)]
        return SimpleNamespace(energy=energy, emb_r=emb_r, v4=v4, a=a, va=va, aa=aa, vb=vb, ab=ab_, vc=vc, ac=ac,
                               advance=advance)

    def _outputs(self, mod: Module, phase, j, st):
        """The embedding stream (convert(emb_acc, frac_r -> emb_fmt), registered), the finish
        command's ready and the result handshake."""
        mod.d.comb += [
            self.emb_valid.eq(st.vc),
            self.emb_data.eq(st.emb_r),
            self.emb_last.eq(st.vc & (st.ac == self.rows - 1)),
            self.fin_ready.eq((phase == RUN) & (j == 0)),
            self.out_valid.eq(phase == DONE),
            self.stop.eq(st.energy < self.stop_threshold),
            self.energy.eq(st.energy),
        ]

    def _sequencer(self, mod: Module, phase, j, take, valids, st):
        """The phase machine: RUN (h in, or a finish command between frames), FLUSH until the
        pipeline (valids) is empty, DONE until the result handshake, EMB the read-out."""
        rows = self.rows
        with mod.If(phase == RUN):
            with mod.If(take):
                mod.d.sync += j.eq(j + 1)
                with mod.If(j == rows - 1):
                    mod.d.sync += phase.eq(FLUSH)
            with mod.Elif(self.fin_valid & (j == 0)):
                # row 0's read data is registered now (read while idle), row 1 is read now
                mod.d.sync += [phase.eq(EMB), st.a.eq(min(2, rows)), st.va.eq(rows > 1), st.aa.eq(1),
                               st.vb.eq(1), st.ab.eq(0), st.vc.eq(0)]
        with mod.Elif(phase == FLUSH):
            with mod.If(~Cat(*valids).any()):
                mod.d.sync += phase.eq(DONE)
        with mod.Elif(phase == DONE):
            with mod.If(self.out_ready):
                mod.d.sync += [phase.eq(RUN), j.eq(0), st.energy.eq(0)]
        with mod.Elif(phase == EMB):
            with mod.If(st.advance):
                mod.d.sync += [st.va.eq(st.a < rows), st.aa.eq(st.a)]
                with mod.If(st.a < rows):
                    mod.d.sync += st.a.eq(st.a + 1)
            with mod.If(st.vc & self.emb_ready & (st.ac == rows - 1)):
                mod.d.sync += [phase.eq(RUN), st.va.eq(0), st.vb.eq(0), st.vc.eq(0)]

__all__ = ["Residue", "residue_params", "residue_phases", "residue_cycles",
           "embedding_cycles", "PIPE_STAGES", "EMB_STAGES", "beats", "row_shape", "row_init", "row_words",
           "pack_words", "tree_sum"]
