"""The residue block of the pipelined top level: one embedding accumulator per sample slot and
a read-out that runs beside the residue frames (docs/rtl.md "Samples in flight").

The residue pipeline, stop rule and energy are `hrn_hw.rtl.residue.Residue`'s, unchanged. What
differs is the accumulator:
- `slot` and `first` are sampled with each frame's first h, beside `sel` and `coef`: the frame
  accumulates into slot `slot`'s rows, and a sample's first frame writes r itself (the rows
  keep the previous sample of the slot until then: nothing has to clear them).
- the read-out is its own command stream `rd_valid` / `rd_ready` with `rd_slot` and `rd_zero`
  (the slot's sample never reached a residue: its embedding is zero), then the embedding
  stream `emb_*` (ceil(s / W) beats of emb_fmt words, back-pressure). It reads through a second
  read port, so the head can read one sample's embedding while the block computes another's
  residue. Its first beat leaves EMB_STAGES cycles after the command handshake (row 0's
  address with the handshake, the read-data register, the convert register).

Rows of slot k live at addresses k * 2^a + row (a = bits of the row count).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory
from amaranth.lib.wiring import In

from hrn_hw.rtl.fixed import convert_expr
from hrn_hw.rtl.residue import DONE, FLUSH, RUN, Residue
from hrn_hw.rtl.rows import pack_words, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in


class SlottedResidue(Residue):
    """`Residue` with `slots` embedding accumulators and a concurrent read-out (above)."""

    def __init__(self, *args, slots: int, **kwargs):
        self.slots = int(slots)
        if self.slots < 1:
            raise ValueError("slots must be >= 1")
        super().__init__(*args, **kwargs)

    def _ports(self) -> dict:
        members = super()._ports()
        members.pop("fin_valid"), members.pop("fin_ready")
        slot = range(max(2, self.slots))
        members.update({"slot": In(slot), "first": In(1),
                        **stream_in("rd", fields={"rd_slot": slot, "rd_zero": 1})})
        return members

    def elaborate(self, platform):
        """The frame operands, the residue pipeline (`Residue`'s), the slotted accumulate and the
        read-out, the phases RUN / FLUSH / DONE."""
        mod = Module()
        ab = max(1, self.rows.bit_length())
        phase = Signal(range(4))
        j = Signal(ab)
        take = self.in_valid & self.in_ready
        mod.d.comb += self.in_ready.eq(phase == RUN)

        coef_r, sel_now = self._operands(mod, j, take)
        slot_r, first_r = Signal.like(self.slot), Signal()
        with mod.If(take & (j == 0)):
            mod.d.sync += [slot_r.eq(self.slot), first_r.eq(self.first)]
        v1s, v2, j1c, j2, diffs = self._difference(mod, j, take, sel_now, coef_r, ab)
        v3, j3, rs = self._convert(mod, v2, j2, diffs, ab)
        emb = memory.Memory(shape=row_shape(self.acc_width, self.words), depth=self.slots << ab, init=[])
        mod.submodules.emb = emb
        v4, energy = self._slot_accumulate(mod, emb, v1s[-1], j1c, v3, j3, rs, slot_r, first_r, ab)
        self._readout(mod, emb, ab)
        mod.d.comb += [self.out_valid.eq(phase == DONE), self.stop.eq(energy < self.stop_threshold),
                       self.energy.eq(energy)]
        with mod.If(phase == RUN):
            with mod.If(take):
                mod.d.sync += j.eq(j + 1)
                with mod.If(j == self.rows - 1):
                    mod.d.sync += phase.eq(FLUSH)
        with mod.Elif(phase == FLUSH):
            with mod.If(~Cat(*v1s, v2, v3, v4).any()):
                mod.d.sync += phase.eq(DONE)
        with mod.Elif(phase == DONE):
            with mod.If(self.out_ready):
                mod.d.sync += [phase.eq(RUN), j.eq(0), energy.eq(0)]
        return mod

    def _slot_accumulate(self, mod: Module, emb, v1c, j1c, v3, j3, rs, slot_r, first_r, ab: int):
        """emb[slot][j] = r (a sample's first frame) or emb[slot][j] + r, read two stages
        ahead (stage 1c's row) and its read data registered; the squares and the energy.
        Returns (v4, energy)."""
        W = self.words
        wr, rd = emb.write_port(), emb.read_port()
        acc_r = Signal(row_shape(self.acc_width, W))
        mod.d.comb += [rd.addr.eq(Cat(j1c, slot_r)), rd.en.eq(1)]
        mod.d.sync += acc_r.eq(rd.data)
        acc = row_words(acc_r, self.acc_width, W)
        with mod.If(v3):
            new = [Mux(first_r, r, x + r) for x, r in zip(acc, rs)]
            mod.d.comb += [wr.addr.eq(Cat(j3, slot_r)), wr.en.eq(1),
                           wr.data.eq(pack_words(mod, new, self.acc_width, name="acc_new"))]
        energy = Signal(self.e_width)
        sqs = [Signal(2 * self.r_fmt.width, name=f"rsq{p}") for p in range(W)]
        v4 = Signal()
        mod.d.sync += [v4.eq(v3)] + [q.eq(r * r) for q, r in zip(sqs, rs)]
        with mod.If(v4):
            mod.d.sync += energy.eq(energy + tree_sum(sqs))
        return v4, energy

    def _readout(self, mod: Module, emb, ab: int):
        """The read-out: on a command, row 0 of the slot is read at once; then the address
        counter, the read-data register (zero for rd_zero) and the convert register advance
        together under back-pressure; the last beat ends it."""
        W, rows, ef = self.words, self.rows, self.emb_fmt
        rd = emb.read_port()
        active, zero_r = Signal(), Signal()
        slot_r = Signal.like(self.rd_slot)
        a, va, aa = Signal(ab + 1), Signal(), Signal(ab)
        vb, ab_, vc, ac = Signal(), Signal(ab), Signal(), Signal(ab)
        acc_r = Signal(row_shape(self.acc_width, W))
        emb_r = Signal(row_shape(ef.width, W, ef.signed))
        advance = ~vc | self.emb_ready
        cmd = self.rd_valid & self.rd_ready
        mod.d.comb += [self.rd_ready.eq(~active),
                       rd.addr.eq(Mux(active, Cat(a[:ab], slot_r), Cat(Signal(ab), self.rd_slot))),
                       rd.en.eq(cmd | (active & advance))]
        with mod.If(cmd):
            mod.d.sync += [active.eq(1), slot_r.eq(self.rd_slot), zero_r.eq(self.rd_zero), a.eq(1), va.eq(1),
                           aa.eq(0), vb.eq(0), vc.eq(0)]
        with mod.Elif(active & advance):
            acc = row_words(acc_r, self.acc_width, W)
            row = pack_words(mod, [convert_expr(x, self.r_fmt.frac, ef) for x in acc], ef.width, ef.signed, "emb_out")
            mod.d.sync += [va.eq(a < rows), aa.eq(a), vb.eq(va), ab_.eq(aa), vc.eq(vb), ac.eq(ab_),
                           acc_r.eq(Mux(zero_r, 0, rd.data)), emb_r.eq(row)]
            with mod.If(a < rows):
                mod.d.sync += a.eq(a + 1)
            with mod.If(vc & (ac == rows - 1)):
                mod.d.sync += [active.eq(0), va.eq(0), vb.eq(0), vc.eq(0)]
        mod.d.comb += [self.emb_valid.eq(vc), self.emb_data.eq(emb_r), self.emb_last.eq(vc & (ac == rows - 1))]
