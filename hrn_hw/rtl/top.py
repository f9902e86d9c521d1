# amaranth: UnusedElaboratable=no
# (a top level built only for its interface, or whose Verilog comes from the cache, is never elaborated)
"""Top level of the routed dataflow: one sample at a time through the RTL blocks (docs/rtl.md,
"Top level").

Bit-exact with `hrn_hw.golden.run` on embedding, route and logits. Per sample:

1. IMG: the pixels stream in (valid/ready, 8-bit, flat CHW; `task` sampled with the first) and
   go at once into the hash unit (seed phi_0) and into the map buffer.
2. ROUTE: hash unit -> normaliser -> projection comparator, chained as streams; each h word the
   comparator accepts is also written into the h buffer. The comparator selects the unit of
   largest energy among the initialised, unused ones (`allowed`); none left ends the sample.
3. RES: the h buffer is replayed into the residue block with the selected unit and its m
   coefficients; the residue is added to the embedding accumulator. The sample goes on when
   fewer than d units were selected, the residue energy is >= T (tau_d) and an initialised
   unused unit remains.
4. CONV: the unit-pool crossbar (`hrn_hw.rtl.crossbar`) gives the selected unit's call id and
   the next map state; the map buffer streams into that unit's conv engine, whose output
   streams into the hash unit (seed phi_{u+1}) and back into the map buffer. Then ROUTE again.
5. FIN / EMB / HEAD: the embedding streams out of the residue block to the `emb_*` port and
   into the head engine (task id of the sample) together; the logits leave on `out_*`, with
   `route` (d signed fields, the selected unit per step, -1 after the sample stopped) held
   until the next sample's first pixel handshake.

Latency per sample: `hrn_hw.rtl.latency.sample_cycles` (the cycle model; the testbench
checks it equals the measured cycles for every sample).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.export.ir import INPUT_FMT
from hrn_hw.export.shapes import unit_calls
from hrn_hw.rtl.basis_rom import BasisRom
from hrn_hw.rtl.conv_engine import ConvEngine, _pick, conv_engine_params
from hrn_hw.rtl.crossbar import routing_table
from hrn_hw.rtl.hash_unit import HashUnit
from hrn_hw.rtl.head import HeadEngine, head_params
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.normaliser import Normaliser
from hrn_hw.rtl.projection import ProjectionComparator
from hrn_hw.rtl.residue import Residue, residue_params
from hrn_hw.rtl.rows import beats, pack_words, row_shape, row_words
from hrn_hw.rtl.streams import stream_in, stream_out

IMG, ROUTE, RES, CONV, FIN, EMB, HEAD = range(7)


def stream_reader(m: Module, port, start, count, out_ready):
    """Stream rows 0 .. count-1 of a memory through its synchronous read port after a
    `start` pulse, with back-pressure; returns (valid, data, last)."""
    addr = Signal(range(1 << len(port.addr) + 1))
    valid, active = Signal(), Signal()
    advance = ~valid | out_ready
    more = active & (addr < count)
    m.d.comb += [port.addr.eq(addr), port.en.eq(advance)]
    with m.If(start):
        m.d.sync += [addr.eq(0), active.eq(1), valid.eq(0)]
    with m.Elif(advance):
        m.d.sync += valid.eq(more)
        with m.If(more):
            m.d.sync += addr.eq(addr + 1)
        with m.Else():
            m.d.sync += active.eq(0)
    return valid, port.data, valid & (addr == count)


class HrnTop(wiring.Component):
    """The whole routed dataflow of a QuantModel; `knobs` (RtlKnobs) sets the words per beat
    and the lanes."""

    def __init__(self, qm, knobs: RtlKnobs | None = None):
        self.qm, self.knobs = qm, knobs or RtlKnobs()
        self.table = routing_table(qm)
        states = self.table.states
        M, s, d = qm.num_units, int(qm.s), int(qm.d)
        W = self.words = self.knobs.words
        self.n_input = int(np.prod(qm.input_shape))
        self.map_width = max(st.width + (0 if st.signed else 1) for st in states)
        self.map_depth = max(st.size for st in states)
        self.route_width = max(2, (M - 1).bit_length() + 1)
        self.init_mask = sum(1 << u.index for u in qm.units if u.initialised)

        k = self.knobs
        self.hash_unit = HashUnit(s, self.map_width, True, self.map_depth, words=W)
        self.normaliser = Normaliser(s, int(qm.norm_k), qm.h_fmt, words=W, root_bits=k.root_bits)
        self.projection = ProjectionComparator(qm.bases, qm.h_fmt, qm.basis_fmt, qm.coef_fmt, words=W, rom="external")
        self.residue = Residue(**residue_params(qm, words=W), rom="external")
        self.basis_rom = BasisRom(qm.bases, qm.basis_fmt.width, words=W, ports=2)
        self.head = HeadEngine(**head_params(qm, lanes=k.head_lanes, words=W))
        self.engines = {}
        for unit in qm.units:
            if unit_calls(qm, unit.index):
                params = conv_engine_params(qm, unit.index)
                self.engines[unit.index] = ConvEngine(**params, lanes=k.lanes_of(unit), words=W,
                                                      pixel_lanes=k.pixel_lanes)
        emb_fmt = qm.emb_fmt
        emb_shape = signed(emb_fmt.width) if emb_fmt.signed else unsigned(emb_fmt.width)
        super().__init__({
            "task": In(range(max(2, len(qm.heads)))),
            **stream_in("in", INPUT_FMT.width * W),
            **stream_out("emb", emb_shape if W == 1 else unsigned(emb_fmt.width * W), last=True),
            **stream_out("out", signed(self.head.out_width), last=True),
            "route": Out(d * self.route_width),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        """The blocks, the sample state and the buffers, then the phases IMG, ROUTE, RES, CONV
        and FIN / EMB / HEAD."""
        m = Module()
        self._blocks(m)
        r = self._state(m)
        bufs = self._buffers(m)
        self._route_chain(m, r, bufs.h_wr)
        self._img(m, r, bufs.map_wr)
        selected = self._route(m, r)
        go_on = self._res(m, r, bufs.h_rd, selected)
        self._conv(m, r, bufs, go_on)
        self._finish(m, r)
        return m

    def _blocks(self, m: Module):
        """The blocks as submodules; the basis ROMs held once: port 0 to the projection
        comparator, port 1 to the residue block."""
        hu, nm, pj, rs, hd = self.hash_unit, self.normaliser, self.projection, self.residue, self.head
        m.submodules.hash_unit, m.submodules.normaliser = hu, nm
        m.submodules.projection, m.submodules.residue, m.submodules.head = pj, rs, hd
        m.submodules.basis_rom = rom = self.basis_rom        # held once: port 0 projection, port 1 residue
        for p, reader in enumerate((pj, rs)):
            m.d.comb += [getattr(rom, f"addr{p}").eq(reader.rom_addr), getattr(rom, f"en{p}").eq(reader.rom_en),
                         reader.rom_data.eq(getattr(rom, f"data{p}"))]
        for u, eng in self.engines.items():
            m.submodules[f"unit{u}"] = eng

    def _state(self, m: Module):
        """The sample's state: phase, task, routing step, used units, the selected unit and its
        coefficients, the crossbar state and call, the map size, the hash seed, the routes,
        the buffers' write addresses and the allowed units."""
        qm, table = self.qm, self.table
        M, s, d, W = qm.num_units, int(qm.s), int(qm.d), self.words
        s_rows, map_rows = beats(s, W), beats(self.map_depth, W)
        phase = Signal(range(7))
        task_r = Signal.like(self.task)
        step = Signal(range(max(2, d)))
        used = Signal(M)
        sel_r = Signal(range(max(2, M)))
        coef_r = Signal(qm.m * qm.coef_fmt.width)
        state = Signal(range(max(2, len(table.states))))
        call_r = Signal(range(max([2] + [len(e.calls) for e in self.engines.values()])))
        count_r = Signal(range(map_rows + 1))
        seed_r = Signal(32, init=int(qm.hash_seeds[0]))
        routes = [Signal(signed(self.route_width), init=-1, name=f"route{k}") for k in range(d)]
        wa = Signal(range(map_rows + 1))
        ha = Signal(range(s_rows))
        allowed = Signal(M)
        m.d.comb += [allowed.eq(Const(self.init_mask, M) & ~used), self.route.eq(Cat(*routes)),
                     self.busy.eq(phase != IMG)]
        return SimpleNamespace(phase=phase, task_r=task_r, step=step, used=used, sel_r=sel_r, coef_r=coef_r,
                               state=state, call_r=call_r, count_r=count_r, seed_r=seed_r, routes=routes,
                               wa=wa, ha=ha, allowed=allowed)

    def _buffers(self, m: Module):
        """The map buffer (the current map) and the h buffer (h of the routing step): their
        write and read ports."""
        qm, W = self.qm, self.words
        s_rows, map_rows = beats(int(qm.s), W), beats(self.map_depth, W)
        m.submodules.map_buffer = maps = memory.Memory(shape=row_shape(self.map_width, W), depth=map_rows, init=[])
        m.submodules.h_buffer = hbuf = memory.Memory(shape=row_shape(qm.h_fmt.width, W), depth=s_rows, init=[])
        map_wr, map_rd = maps.write_port(), maps.read_port()
        h_wr, h_rd = hbuf.write_port(), hbuf.read_port()
        return SimpleNamespace(map_wr=map_wr, map_rd=map_rd, h_wr=h_wr, h_rd=h_rd)

    def _route_chain(self, m: Module, r, h_wr):
        """hash -> normaliser -> projection, chained as streams; h taps into the h buffer."""
        hu, nm, pj = self.hash_unit, self.normaliser, self.projection
        s_rows, ha = beats(int(self.qm.s), self.words), r.ha
        m.d.comb += [
            hu.seed.eq(r.seed_r),
            nm.in_valid.eq(hu.out_valid), hu.out_ready.eq(nm.in_ready), nm.in_data.eq(hu.out_data),
            pj.in_valid.eq(nm.out_valid), nm.out_ready.eq(pj.in_ready), pj.in_data.eq(nm.out_data),
            pj.allowed.eq(r.allowed),
            h_wr.addr.eq(ha), h_wr.data.eq(nm.out_data), h_wr.en.eq(nm.out_valid & pj.in_ready),
        ]
        with m.If(nm.out_valid & pj.in_ready):
            m.d.sync += ha.eq(Mux(ha == s_rows - 1, 0, ha + 1))

    def _img(self, m: Module, r, map_wr):
        """IMG: the pixels into the hash unit and the map buffer; the task and cleared routes
        with the first, ROUTE after the last."""
        hu, W, wa = self.hash_unit, self.words, r.wa
        n_rows = beats(self.n_input, W)
        take_px = self.in_valid & self.in_ready
        with m.If(r.phase == IMG):
            pixels = pack_words(m, row_words(self.in_data, INPUT_FMT.width, W, is_signed=False), self.map_width,
                                name="px")
            m.d.comb += [self.in_ready.eq(hu.in_ready), hu.in_valid.eq(self.in_valid),
                         hu.in_data.eq(pixels), hu.in_last.eq(wa == n_rows - 1),
                         map_wr.addr.eq(wa), map_wr.data.eq(pixels), map_wr.en.eq(take_px)]
            with m.If(take_px):
                m.d.sync += wa.eq(wa + 1)
                with m.If(wa == 0):
                    m.d.sync += [r.task_r.eq(self.task)] + [x.eq(-1) for x in r.routes]
                with m.If(wa == n_rows - 1):
                    m.d.sync += [wa.eq(0), r.phase.eq(ROUTE)]

    def _route(self, m: Module, r):
        """ROUTE: the comparator's result: the selected unit and its coefficients (RES), or
        none allowed (FIN). Returns the result handshake."""
        pj, phase = self.projection, r.phase
        selected = (phase == ROUTE) & pj.out_valid
        m.d.comb += pj.out_ready.eq(phase == ROUTE)
        with m.If(selected):
            with m.If(pj.ok):
                m.d.sync += [phase.eq(RES), r.sel_r.eq(pj.sel),
                             r.coef_r.eq(pj.coef.word_select(pj.sel, len(r.coef_r))),
                             r.used.eq(r.used | (1 << pj.sel))]
                for k in range(int(self.qm.d)):
                    with m.If(r.step == k):
                        m.d.sync += r.routes[k].eq(pj.sel)
            with m.Else():
                m.d.sync += phase.eq(FIN)
        return selected

    def _res(self, m: Module, r, h_rd, selected):
        """RES: h replayed into the residue block; on its result either the next step (CONV:
        seed, map size, crossbar call and state) or FIN. Returns the go-on condition."""
        qm, table, rs, W, phase = self.qm, self.table, self.residue, self.words, r.phase
        M, d, s_rows = qm.num_units, int(qm.d), beats(int(qm.s), W)
        h_valid, h_data, _ = stream_reader(m, h_rd, selected & self.projection.ok, s_rows, rs.in_ready)
        m.d.comb += [rs.in_valid.eq(h_valid), rs.in_data.eq(h_data), rs.sel.eq(r.sel_r),
                     rs.coef.eq(r.coef_r), rs.out_ready.eq(phase == RES)]
        resolved = (phase == RES) & rs.out_valid
        go_on = resolved & (r.step < d - 1) & ~rs.stop & (r.allowed != 0)
        with m.If(resolved):
            with m.If(go_on):
                m.d.sync += [phase.eq(CONV), r.step.eq(r.step + 1), r.wa.eq(0),
                             r.seed_r.eq(_pick(r.sel_r, [qm.hash_seeds[u + 1] for u in range(M)], 32)),
                             r.count_r.eq(_pick(r.state, [beats(st.size, W) for st in table.states], len(r.count_r)))]
                for (q, u), (cid, nxt) in table.transitions.items():
                    with m.If((r.state == q) & (r.sel_r == u)):
                        m.d.sync += [r.call_r.eq(cid), r.state.eq(nxt)]
            with m.Else():
                m.d.sync += phase.eq(FIN)
        return go_on

    def _conv(self, m: Module, r, bufs, go_on):
        """CONV: the map buffer into the selected engine, its output into the hash unit and back
        into the map buffer; ROUTE after the last beat."""
        hu, W, sel_r, phase, wa, map_wr = self.hash_unit, self.words, r.sel_r, r.phase, r.wa, bufs.map_wr
        x_valid, x_data, _ = stream_reader(m, bufs.map_rd, go_on, r.count_r, self._engine_mux(m, sel_r, "in_ready"))
        conv_out_valid = self._engine_mux(m, sel_r, "out_valid")
        conv_out_data = self._engine_mux(m, sel_r, "out_data", unsigned(W * self.map_width),
                                         lambda eng, v: pack_words(m, row_words(v, len(v) // W, W), self.map_width,
                                                                   name="conv_out"))
        conv_out_last = self._engine_mux(m, sel_r, "out_last")
        for u, eng in self.engines.items():
            mine = sel_r == u
            x_words = pack_words(m, row_words(x_data, self.map_width, W), len(eng.in_data) // W, name=f"x{u}_")
            m.d.comb += [eng.call_id.eq(r.call_r), eng.in_valid.eq(x_valid & mine), eng.in_data.eq(x_words),
                         eng.out_ready.eq(mine & (phase == CONV) & hu.in_ready)]
        conv_take = (phase == CONV) & conv_out_valid & hu.in_ready
        with m.If(phase == CONV):
            m.d.comb += [hu.in_valid.eq(conv_out_valid), hu.in_data.eq(conv_out_data),
                         hu.in_last.eq(conv_out_last),
                         map_wr.addr.eq(wa), map_wr.data.eq(conv_out_data), map_wr.en.eq(conv_take)]
            with m.If(conv_take):
                m.d.sync += wa.eq(wa + 1)
                with m.If(conv_out_last):
                    m.d.sync += [wa.eq(0), phase.eq(ROUTE)]

    def _finish(self, m: Module, r):
        """FIN / EMB / HEAD: the finish command, the embedding out and into the head together,
        the logits out; IMG again after the last logit."""
        rs, hd, phase = self.residue, self.head, r.phase
        m.d.comb += rs.fin_valid.eq(phase == FIN)
        with m.If((phase == FIN) & rs.fin_ready):
            m.d.sync += phase.eq(EMB)
        m.d.comb += [
            hd.task.eq(r.task_r), hd.in_data.eq(rs.emb_data),
            hd.in_valid.eq(rs.emb_valid & self.emb_ready),
            self.emb_valid.eq(rs.emb_valid & hd.in_ready), self.emb_data.eq(rs.emb_data),
            self.emb_last.eq(rs.emb_last & hd.in_ready),
            rs.emb_ready.eq(self.emb_ready & hd.in_ready),
            self.out_valid.eq(hd.out_valid), hd.out_ready.eq(self.out_ready),
            self.out_data.eq(hd.out_data), self.out_last.eq(hd.out_last),
        ]
        with m.If((phase == EMB) & rs.emb_valid & rs.emb_last & self.emb_ready & hd.in_ready):
            m.d.sync += phase.eq(HEAD)
        with m.If(hd.out_valid & hd.out_last & self.out_ready):
            m.d.sync += [phase.eq(IMG), r.step.eq(0), r.used.eq(0), r.state.eq(0),
                         r.seed_r.eq(int(self.qm.hash_seeds[0]))]

    def _engine_mux(self, m: Module, sel, port: str, shape=None, adapt=None):
        """The selected conv engine's output port `port`, through `adapt(engine, value)` if
        given (0 when no engine exists)."""
        engines = list(self.engines.items())
        if not engines:
            return Const(0, shape or 1)
        adapt = adapt or (lambda eng, v: v)
        out = Signal(shape or len(getattr(engines[0][1], port)), name=f"sel_{port}")
        value = adapt(engines[0][1], getattr(engines[0][1], port))
        for u, eng in engines[1:]:
            value = Mux(sel == u, adapt(eng, getattr(eng, port)), value)
        m.d.comb += out.eq(value)
        return out
