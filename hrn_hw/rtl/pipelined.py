# amaranth: UnusedElaboratable=no
"""The pipelined top level: several samples in flight, engines joined by queues of sample slots
(docs/rtl.md "Samples in flight"). The RTL knob `in_flight` K >= 2 selects it.

Bit-exact with `hrn_hw.golden.run` per sample, like `hrn_hw.rtl.top.HrnTop`; its timing is
`hrn_hw.rtl.latency.pipelined_ops` run by the dataflow simulator's engine
(`hrn_hw.dataflow.stream.stream_schedule`), cycle for cycle.

- Slots: K samples at once. Each slot holds the sample's buffers (map, phi, h: one memory of
  each per slot), its routing state (task, step, used units, selected unit and coefficients,
  crossbar state, next call, map sizes, hash seed, route, sample id) and, in the residue block
  (`SlottedResidue`), its embedding accumulator.
- Engines (servers) in pools: `input` (a hash unit on the input port: the image hashed as it
  arrives and written into the slot's map buffer), `hash`, `normaliser`, `projection`,
  `residue`, `unit<u>` (a conv engine each) and `head`; `replicas` copies the hash units,
  normalisers, projection comparators and conv engines.
- Jobs: a sample is in one job at a time. An engine that is free takes the oldest waiting
  slot of its pool (first come, ties by sample order; the r-th free copy takes the r-th) and
  registers it (DISPATCH); it then reads its frame from the slot's buffer (READ_LATENCY),
  writes its output into the slot's buffer, and after its last output the slot is handed off
  through a register (HANDOFF) and waits in the next pool: input or hash -> normaliser -> projection -> residue (a unit
  selected) or head (none); residue -> unit<u> (go on) or head; unit<u> -> hash; head ->
  slot free. A free slot lets the input engine take the next image.
- Ports: as HrnTop's, plus `emb_id` and `out_id` (the sample's index in the stream since
  reset, mod 2^16) and `route` travelling with the logits. Samples leave in the order they
  finish, tagged; the embedding and the logits of a sample leave together, in the same order.
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
from hrn_hw.rtl.residue import residue_params
from hrn_hw.rtl.residue_slots import SlottedResidue
from hrn_hw.rtl.rows import beats, pack_words, row_shape, row_words
from hrn_hw.rtl.streams import stream_in, stream_out

ID_BITS = 16          # width of the sample ids on emb_id / out_id


def _popcount(bits):
    return sum((b.as_unsigned() for b in bits), Const(0, 1)) if bits else Const(0, 1)


class PipelinedTop(wiring.Component):
    """The routed dataflow of a QuantModel with `knobs.in_flight` samples at once."""

    def __init__(self, qm, knobs: RtlKnobs):
        if knobs.in_flight < 2:
            raise ValueError("PipelinedTop holds several samples: knobs.in_flight >= 2 (HrnTop holds one)")
        self.qm, self.knobs, self.K = qm, knobs, knobs.in_flight
        self.table = routing_table(qm)
        states = self.table.states
        M, s, d, W = qm.num_units, int(qm.s), int(qm.d), knobs.words
        self.words = W
        self.n_input = int(np.prod(qm.input_shape))
        self.map_width = max(st.width + (0 if st.signed else 1) for st in states)
        self.map_depth = max(st.size for st in states)
        self.route_width = max(2, (M - 1).bit_length() + 1)
        self.init_mask = sum(1 << u.index for u in qm.units if u.initialised)
        called = [u.index for u in qm.units if unit_calls(qm, u.index)]
        for name, _ in knobs.replicas:
            if name.startswith("unit") and int(name[4:]) not in called:
                raise ValueError(f"replicas: {name} is not a unit this model calls ({called})")

        def hash_unit():
            return HashUnit(s, self.map_width, True, self.map_depth, words=W)
        self.input_hash = hash_unit()
        self.pools = {"hash": [hash_unit() for _ in range(knobs.copies("hash"))],
                      "normaliser": [Normaliser(s, int(qm.norm_k), qm.h_fmt, words=W, root_bits=knobs.root_bits)
                                     for _ in range(knobs.copies("normaliser"))],
                      "projection": [ProjectionComparator(qm.bases, qm.h_fmt, qm.basis_fmt, qm.coef_fmt, words=W,
                                                          rom="external") for _ in range(knobs.copies("projection"))],
                      "residue": [SlottedResidue(**residue_params(qm, words=W), rom="external", slots=self.K)]}
        for u in called:
            params = conv_engine_params(qm, u)
            self.pools[f"unit{u}"] = [ConvEngine(**params, lanes=knobs.lanes_of(qm.units[u]), words=W,
                                                 pixel_lanes=knobs.pixel_lanes) for _ in range(knobs.copies(f"unit{u}"))]
        self.pools["head"] = [HeadEngine(**head_params(qm, lanes=knobs.head_lanes, words=W))]
        self.pool_ids = {name: i for i, name in enumerate(self.pools)}
        self.engines = {u: self.pools[f"unit{u}"][0] for u in called}       # for the RTL summary
        self.residue, self.head = self.pools["residue"][0], self.pools["head"][0]
        self.basis_rom = BasisRom(qm.bases, qm.basis_fmt.width, words=W, ports=len(self.pools["projection"]) + 1)
        emb_fmt = qm.emb_fmt
        emb_shape = signed(emb_fmt.width) if emb_fmt.signed else unsigned(emb_fmt.width)
        super().__init__({
            "task": In(range(max(2, len(qm.heads)))),
            **stream_in("in", INPUT_FMT.width * W),
            **stream_out("emb", emb_shape if W == 1 else unsigned(emb_fmt.width * W), last=True,
                         fields={"emb_id": ID_BITS}),
            **stream_out("out", signed(self.head.out_width), last=True,
                         fields={"out_id": ID_BITS, "route": d * self.route_width}),
            "busy": Out(1),
        })

    # ---- elaboration ------------------------------------------------------------------------

    def elaborate(self, platform):
        """The blocks, the slots and their buffers, the servers of every pool (dispatch, frame
        read and write, completion), the queues and the admission of new samples."""
        m = Module()
        self._blocks(m)
        sl = self._slots(m)
        bufs = self._buffers(m)
        servers = {"input": [self._server(m, "input", 0, self.input_hash)]}
        servers.update({name: [self._server(m, name, i, blk) for i, blk in enumerate(group)]
                        for name, group in self.pools.items()})
        self._input(m, sl, bufs, servers["input"][0])
        for e in servers["hash"]:
            self._hash(m, sl, bufs, e)
        for e in servers["normaliser"]:
            self._frame(m, sl, e, bufs.phi, bufs.h, Const(bufs.h[0].rows), "projection")
        for e in servers["projection"]:
            self._projection(m, sl, bufs, e)
        self._residue(m, sl, bufs, servers["residue"][0])
        for name, group in servers.items():
            for e in group if name.startswith("unit") else ():
                self._conv(m, sl, bufs, e)
        self._head(m, sl, servers["head"][0])
        self._connect_buffers(m, bufs)
        self._queues(m, sl, servers)
        return m

    def _blocks(self, m: Module):
        """The blocks as submodules; the basis ROMs held once, a port per projection comparator
        and one for the residue block."""
        m.submodules.input_hash = self.input_hash
        m.submodules.basis_rom = rom = self.basis_rom
        for name, group in self.pools.items():
            for i, blk in enumerate(group):
                m.submodules[f"{name}_{i}"] = blk
        for p, reader in enumerate(self.pools["projection"] + self.pools["residue"]):
            m.d.comb += [getattr(rom, f"addr{p}").eq(reader.rom_addr), getattr(rom, f"en{p}").eq(reader.rom_en),
                         reader.rom_data.eq(getattr(rom, f"data{p}"))]

    def _slots(self, m: Module):
        """Per slot: occupied, sample id, task, step, used units, selected unit and its
        coefficients, crossbar state and next call, map rows of the next conv and hash, hash
        seed, route, whether a residue ran; the samples' age order (older[a][b]: a admitted
        before b) and the queues (waiting, its pool, before[a][b]: a entered it before b)."""
        qm, K, M, d, W = self.qm, self.K, self.qm.num_units, int(self.qm.d), self.words
        map_rows = beats(self.map_depth, W)
        calls = max([2] + [len(unit_calls(qm, u)) for u in self.engines])

        def per_slot(name, shape, init=0):
            return [Signal(shape, name=f"{name}{k}", init=init) for k in range(K)]
        sl = SimpleNamespace(
            occupied=per_slot("occupied", 1), sid=per_slot("sid", ID_BITS), task=per_slot("task", len(self.task)),
            step=per_slot("step", range(max(2, d))), used=per_slot("used", M),
            sel=per_slot("sel", range(max(2, M))), coef=per_slot("coef", qm.m * qm.coef_fmt.width),
            state=per_slot("state", range(max(2, len(self.table.states)))), call=per_slot("call", range(calls)),
            conv_rows=per_slot("conv_rows", range(map_rows + 1)), hash_rows=per_slot("hash_rows", range(map_rows + 1)),
            seed=per_slot("seed", 32), has_emb=per_slot("has_emb", 1),
            routes=[[Signal(signed(self.route_width), name=f"route{k}_{j}", init=-1) for j in range(d)]
                    for k in range(K)],
            waiting=per_slot("waiting", 1), pool=per_slot("wpool", range(max(2, len(self.pools)))),
            older=[[Signal(name=f"older{a}_{b}") for b in range(K)] for a in range(K)],
            before=[[Signal(name=f"before{a}_{b}") for b in range(K)] for a in range(K)],
            next_id=Signal(ID_BITS), push=[])
        sl.allowed = [Const(self.init_mask, M) & ~u for u in sl.used]
        m.d.comb += self.busy.eq(Cat(*sl.occupied).any())
        return sl

    def _buffers(self, m: Module):
        """Per slot: the map buffer (the current map), the phi buffer (the hash unit's output)
        and the h buffer (the normaliser's). Each memory's ports are driven by the one server
        that holds its slot (`_connect_buffers`)."""
        qm, W, K = self.qm, self.words, self.K
        s_rows, map_rows = beats(int(qm.s), W), beats(self.map_depth, W)
        phi_width = len(self.input_hash.out_data) // W
        bufs = SimpleNamespace(map=[], phi=[], h=[])
        for name, width, rows in (("map", self.map_width, map_rows), ("phi", phi_width, s_rows),
                                  ("h", qm.h_fmt.width, s_rows)):
            for k in range(K):
                mem = memory.Memory(shape=row_shape(width, W), depth=rows, init=[])
                m.submodules[f"{name}_buffer{k}"] = mem
                getattr(bufs, name).append(SimpleNamespace(mem=mem, wr=mem.write_port(), rd=mem.read_port(),
                                                           readers=[], writers=[], rows=rows))
        return bufs

    def _server(self, m: Module, pool: str, index: int, block):
        """A server per engine copy: busy, its slot (index and one-hot `owns`), `fresh` (the
        cycle after it took a job), `take` / `take_slot` (driven by the queues) and `done`
        (driven by its job: the last output handshake)."""
        K, name = self.K, f"{pool}{index}_"
        e = SimpleNamespace(pool=pool, block=block, name=name,
                            busy=Signal(name=f"{name}busy"), fresh=Signal(name=f"{name}fresh"),
                            owns=[Signal(name=f"{name}owns{k}") for k in range(K)],
                            slot=Signal(range(max(2, K)), name=f"{name}slot"),
                            take=Signal(name=f"{name}take"), take_slot=Signal(range(max(2, K)), name=f"{name}tslot"),
                            done=Signal(name=f"{name}done"), done_r=Signal(name=f"{name}done_r"))
        m.d.sync += [e.fresh.eq(e.take), e.done_r.eq(e.done)]
        with m.If(e.take):
            m.d.sync += [e.busy.eq(1), e.slot.eq(e.take_slot)] + [o.eq(e.take_slot == k) for k, o in enumerate(e.owns)]
        with m.Elif(e.done_r):          # HANDOFF: released with the registered hand-off
            m.d.sync += e.busy.eq(0)
        return e

    @staticmethod
    def _pick_slot(e, values):
        """values[e's slot] (one value per slot) as an AND-OR over the server's one-hot slot."""
        return _and_or(e.owns, values, len(values[0]))

    def _job_reg(self, m: Module, e, values, name: str):
        """values[e's slot] registered in the cycle after the server took the job (valid from
        the job's first frame word on)."""
        reg = Signal(len(values[0]), name=f"{e.name}{name}")
        with m.If(e.fresh):
            m.d.sync += reg.eq(self._pick_slot(e, values))
        return reg

    def _push(self, sl, e, pool):
        """When e is done its slot waits in `pool` (a pool name or an expression of pool ids)
        from the next cycle."""
        sl.push.append((e, Const(self.pool_ids[pool], range(len(self.pools))) if isinstance(pool, str) else pool))

    def _slot_update(self, m: Module, sl, e, update):
        """In the cycle e is done: update(k) (a list of statements) for e's slot k."""
        for k in range(self.K):
            with m.If(e.done & e.owns[k]):
                m.d.sync += update(k)

    def _reader(self, m: Module, e, bufs, count, ready):
        """Stream rows 0 .. count-1 of the slot's buffer: row 0 read in the cycle after the
        server took the job, then one row per accepted beat (back-pressure holds the read
        data). Returns (valid, data, last)."""
        addr = Signal(range(bufs[0].rows + 2), name=f"{e.name}ra")
        valid, active = Signal(name=f"{e.name}rv"), Signal(name=f"{e.name}ract")
        advance = ~valid | ready
        for buf in bufs:
            buf.readers.append((e, Mux(e.fresh, 0, addr), e.fresh | (active & advance)))
        with m.If(e.fresh):
            m.d.sync += [addr.eq(1), active.eq(1), valid.eq(1)]
        with m.Elif(active & advance):
            more = addr < count
            m.d.sync += valid.eq(more)
            with m.If(more):
                m.d.sync += addr.eq(addr + 1)
            with m.Else():
                m.d.sync += active.eq(0)
        return valid, self._pick_slot(e, [buf.rd.data for buf in bufs]), valid & (addr == count)

    def _writer(self, m: Module, e, bufs, valid, data, last, addr=None):
        """Write beats (`valid`) into the slot's buffer rows 0, 1, ... (always ready)."""
        if addr is None:
            addr = Signal(range(bufs[0].rows + 1), name=f"{e.name}wa")
            with m.If(valid):
                m.d.sync += addr.eq(Mux(last, 0, addr + 1))
        for buf in bufs:
            buf.writers.append((e, addr, data, valid))

    def _frame(self, m: Module, sl, e, src, dst, count, nxt: str, last_in: bool = False):
        """A block that turns the slot's frame in `src` into a frame in `dst` (a hash unit,
        a normaliser); done at its last output, then the slot waits in `nxt`."""
        blk = e.block
        valid, data, last = self._reader(m, e, src, count, blk.in_ready)
        m.d.comb += [blk.in_valid.eq(valid), blk.in_data.eq(data), blk.out_ready.eq(1)]
        if last_in:
            m.d.comb += blk.in_last.eq(last)
        self._writer(m, e, dst, blk.out_valid, blk.out_data, blk.out_last)
        m.d.comb += e.done.eq(blk.out_valid & blk.out_last)
        self._push(sl, e, nxt)

    def _input(self, m: Module, sl, bufs, e):
        """The input engine: a hash unit (seed phi_0) on the input port; the pixels also go into
        the slot's map buffer, phi into its phi buffer; the task is sampled with the first
        pixel."""
        hu, W = e.block, self.words
        n_rows = beats(self.n_input, W)
        feeding, px = Signal(), Signal(range(n_rows + 1))
        take_px = self.in_valid & self.in_ready
        pixels = pack_words(m, row_words(self.in_data, INPUT_FMT.width, W, is_signed=False), self.map_width, name="px")
        m.d.comb += [self.in_ready.eq(feeding & hu.in_ready), hu.in_valid.eq(self.in_valid & feeding),
                     hu.in_data.eq(pixels), hu.in_last.eq(px == n_rows - 1), hu.seed.eq(int(self.qm.hash_seeds[0])),
                     hu.out_ready.eq(1)]
        with m.If(e.take):
            m.d.sync += [feeding.eq(1), px.eq(0)]
        with m.Elif(take_px):
            m.d.sync += px.eq(px + 1)
            with m.If(px == n_rows - 1):
                m.d.sync += feeding.eq(0)
        for k in range(self.K):
            with m.If(take_px & (px == 0) & e.owns[k]):
                m.d.sync += sl.task[k].eq(self.task)
        self._writer(m, e, bufs.map, take_px, pixels, None, addr=px)
        self._writer(m, e, bufs.phi, hu.out_valid, hu.out_data, hu.out_last)
        m.d.comb += e.done.eq(hu.out_valid & hu.out_last)
        self._push(sl, e, "normaliser")

    def _hash(self, m: Module, sl, bufs, e):
        """A hash unit on the slot's map after a conv call (its seed and map size from the slot)."""
        rows = self._job_reg(m, e, sl.hash_rows, "rows")
        m.d.comb += e.block.seed.eq(self._job_reg(m, e, sl.seed, "seed"))
        self._frame(m, sl, e, bufs.map, bufs.phi, rows, "normaliser", last_in=True)

    def _projection(self, m: Module, sl, bufs, e):
        """A projection comparator on the slot's h: its result selects the unit (the slot's
        route, used units, coefficients; then the residue) or ends the sample (the head)."""
        pj, d = e.block, int(self.qm.d)
        valid, data, _ = self._reader(m, e, bufs.h, bufs.h[0].rows, pj.in_ready)
        m.d.comb += [pj.in_valid.eq(valid), pj.in_data.eq(data), pj.allowed.eq(self._job_reg(m, e, sl.allowed, "allowed")),
                     pj.out_ready.eq(e.busy), e.done.eq(pj.out_valid & e.busy)]
        coef = pj.coef.word_select(pj.sel, len(sl.coef[0]))

        def update(k):
            out = [sl.sel[k].eq(pj.sel), sl.coef[k].eq(coef)]
            ok = pj.ok.replicate(len(sl.used[k]))
            out.append(sl.used[k].eq(sl.used[k] | (ok & (Const(1, len(sl.used[k])) << pj.sel))))
            for j in range(d):
                out.append(sl.routes[k][j].eq(Mux(pj.ok & (sl.step[k] == j), pj.sel, sl.routes[k][j])))
            return out
        self._slot_update(m, sl, e, update)
        self._push(sl, e, Mux(pj.ok, self.pool_ids["residue"], self.pool_ids["head"]))

    def _residue(self, m: Module, sl, bufs, e):
        """The residue block on the slot's h with its unit and coefficients; on the result the
        sample goes on (the next conv call: crossbar call and state, map sizes, hash seed) or
        ends (the head)."""
        qm, table, rs, W = self.qm, self.table, e.block, self.words
        d, M = int(qm.d), qm.num_units
        valid, data, _ = self._reader(m, e, bufs.h, bufs.h[0].rows, rs.in_ready)
        m.d.comb += [rs.in_valid.eq(valid), rs.in_data.eq(data), rs.slot.eq(e.slot),
                     rs.sel.eq(self._job_reg(m, e, sl.sel, "sel")), rs.coef.eq(self._job_reg(m, e, sl.coef, "coef")),
                     rs.first.eq(self._job_reg(m, e, [~h for h in sl.has_emb], "first")),
                     rs.out_ready.eq(e.busy), e.done.eq(rs.out_valid & e.busy)]
        go_on = [(sl.step[k] < d - 1) & ~rs.stop & (sl.allowed[k] != 0) for k in range(self.K)]
        sizes = [beats(st.size, W) for st in table.states]

        def update(k):
            g, state, sel = go_on[k], sl.state[k], sl.sel[k]
            call, nxt_state, rows = sl.call[k], state, sl.hash_rows[k]
            for (q, u), (cid, nxt) in table.transitions.items():
                hit = g & (state == q) & (sel == u)
                call, nxt_state, rows = Mux(hit, cid, call), Mux(hit, nxt, nxt_state), Mux(hit, sizes[nxt], rows)
            return [sl.has_emb[k].eq(1), sl.call[k].eq(call), sl.state[k].eq(nxt_state), sl.hash_rows[k].eq(rows),
                    sl.step[k].eq(Mux(g, sl.step[k] + 1, sl.step[k])),
                    sl.conv_rows[k].eq(Mux(g, _pick(state, sizes, len(sl.conv_rows[k])), sl.conv_rows[k])),
                    sl.seed[k].eq(Mux(g, _pick(sel, [qm.hash_seeds[u + 1] for u in range(M)], 32), sl.seed[k]))]
        self._slot_update(m, sl, e, update)
        unit_pool = _pick(self._pick_slot(e, sl.sel),
                          [self.pool_ids.get(f"unit{u}", self.pool_ids["head"]) for u in range(M)],
                          range(len(self.pools)))
        self._push(sl, e, Mux(self._pick_slot(e, go_on), unit_pool, self.pool_ids["head"]))

    def _conv(self, m: Module, sl, bufs, e):
        """A conv engine of the selected unit on the slot's map (the crossbar's call); its
        output replaces the map, then the slot waits for a hash unit."""
        eng, W, mw = e.block, self.words, self.map_width
        rows = self._job_reg(m, e, sl.conv_rows, "rows")
        valid, data, _ = self._reader(m, e, bufs.map, rows, eng.in_ready)
        x_words = pack_words(m, row_words(data, mw, W), len(eng.in_data) // W, name=f"{e.name}x")
        out = pack_words(m, row_words(eng.out_data, len(eng.out_data) // W, W), mw, name=f"{e.name}y")
        m.d.comb += [eng.call_id.eq(self._job_reg(m, e, sl.call, "call")), eng.in_valid.eq(valid),
                     eng.in_data.eq(x_words), eng.out_ready.eq(1), e.done.eq(eng.out_valid & eng.out_last)]
        self._writer(m, e, bufs.map, eng.out_valid, out, eng.out_last)
        self._push(sl, e, "hash")

    def _head(self, m: Module, sl, e):
        """The head: the slot's embedding read out of the residue block into the head and the
        `emb` port together, the logits out with the sample's id and route; the slot is free
        after the last logit."""
        rs, hd = self.residue, e.block
        pending = Signal()
        with m.If(e.take):
            m.d.sync += pending.eq(1)
        with m.Elif(rs.rd_valid & rs.rd_ready):
            m.d.sync += pending.eq(0)
        sid = self._pick_slot(e, sl.sid)
        m.d.comb += [
            rs.rd_valid.eq(pending), rs.rd_slot.eq(e.slot), rs.rd_zero.eq(~self._pick_slot(e, sl.has_emb)),
            hd.task.eq(self._job_reg(m, e, sl.task, "task")), hd.in_data.eq(rs.emb_data),
            hd.in_valid.eq(rs.emb_valid & self.emb_ready),
            self.emb_valid.eq(rs.emb_valid & hd.in_ready), self.emb_data.eq(rs.emb_data),
            self.emb_last.eq(rs.emb_last & hd.in_ready), self.emb_id.eq(sid),
            rs.emb_ready.eq(self.emb_ready & hd.in_ready),
            self.out_valid.eq(hd.out_valid), hd.out_ready.eq(self.out_ready), self.out_data.eq(hd.out_data),
            self.out_last.eq(hd.out_last), self.out_id.eq(sid),
            self.route.eq(self._pick_slot(e, [Cat(*r) for r in sl.routes])),
            e.done.eq(hd.out_valid & self.out_ready & hd.out_last),
        ]
        for k in range(self.K):                 # free with the registered hand-off (HANDOFF)
            with m.If(e.done_r & e.owns[k]):
                m.d.sync += sl.occupied[k].eq(0)

    def _connect_buffers(self, m: Module, bufs):
        """Each slot memory's read and write ports: the fields of the server that holds the slot
        (AND-OR over the servers' one-hot slots; one server holds a slot at a time)."""
        for group in (bufs.map, bufs.phi, bufs.h):
            for k, buf in enumerate(group):
                # a server keeps its last slot's one-hot after its job: its enable qualifies it
                reads = [e.owns[k] & en for e, _, en in buf.readers]
                writes = [e.owns[k] & en for e, _, _, en in buf.writers]
                m.d.comb += [buf.rd.addr.eq(_and_or(reads, [a for _, a, _ in buf.readers], len(buf.rd.addr))),
                             buf.rd.en.eq(Cat(*reads).any()),
                             buf.wr.addr.eq(_and_or(writes, [a for _, a, _, _ in buf.writers], len(buf.wr.addr))),
                             buf.wr.data.eq(_and_or(writes, [d for _, _, d, _ in buf.writers], len(buf.wr.data))),
                             buf.wr.en.eq(Cat(*writes).any())]

    def _queues(self, m: Module, sl, servers):
        """Admission (the input engine takes the lowest free slot when it is free), the pools'
        queues (a done server's slot is handed off in a register, HANDOFF, and waits in its next
        pool from the cycle after; the r-th free server of a pool takes the waiting slot with r
        older waiting slots of that pool: first come, ties by sample age) and the age matrices."""
        K, P = self.K, len(self.pools)
        pushed = [Signal(name=f"pushed{k}") for k in range(K)]
        dest = [Signal(range(max(2, P)), name=f"dest{k}") for k in range(K)]
        for k in range(K):
            hits = [e.done & e.owns[k] for e, _ in sl.push]
            m.d.sync += [pushed[k].eq(Cat(*hits).any()),
                         dest[k].eq(_and_or(hits, [pool for _, pool in sl.push], range(P)))]
        rank = [_popcount([sl.waiting[b] & (sl.pool[b] == sl.pool[a]) & sl.before[b][a] for b in range(K) if b != a])
                for a in range(K)]
        popped = [Const(0, 1)] * K
        for name, group in servers.items():
            if name == "input":
                continue
            pid = self.pool_ids[name]
            for i, e in enumerate(group):
                idle_before = _popcount([~o.busy for o in group[:i]])
                cand = [sl.waiting[a] & (sl.pool[a] == pid) & (rank[a] == idle_before) for a in range(K)]
                m.d.comb += [e.take.eq(~e.busy & Cat(*cand).any()),
                             e.take_slot.eq(_or_index(cand, len(e.take_slot)))]
                popped = [p | (~e.busy & c) for p, c in zip(popped, cand)]
        for a in range(K):
            with m.If(pushed[a]):
                m.d.sync += [sl.waiting[a].eq(1), sl.pool[a].eq(dest[a])]
            with m.Elif(popped[a]):
                m.d.sync += sl.waiting[a].eq(0)
            for b in range(K):
                if a == b:
                    continue
                # before[b][a]: b entered its queue before a
                with m.If(pushed[a]):
                    m.d.sync += sl.before[b][a].eq((sl.waiting[b] & (sl.pool[b] == dest[a]))
                                                   | (pushed[b] & (dest[b] == dest[a]) & sl.older[b][a]))
                with m.Elif(pushed[b]):
                    m.d.sync += sl.before[b][a].eq(0)
        self._admit(m, sl, servers["input"][0])

    def _admit(self, m: Module, sl, e):
        """The input engine, when free, takes the lowest free slot: a new sample (its id, a
        cleared routing state, younger than every sample in flight)."""
        K = self.K
        free = [~o for o in sl.occupied]
        first = [free[k] & ~Cat(*free[:k]).any() if k else free[0] for k in range(K)]
        m.d.comb += [e.take.eq(~e.busy & Cat(*free).any()), e.take_slot.eq(_or_index(first, len(e.take_slot)))]
        with m.If(e.take):
            m.d.sync += sl.next_id.eq(sl.next_id + 1)
        for k in range(K):
            with m.If(e.take & first[k]):
                m.d.sync += [sl.occupied[k].eq(1), sl.sid[k].eq(sl.next_id), sl.step[k].eq(0), sl.used[k].eq(0),
                             sl.state[k].eq(0), sl.has_emb[k].eq(0)] + [r.eq(-1) for r in sl.routes[k]]
                m.d.sync += [sl.older[x][k].eq(sl.occupied[x]) for x in range(K) if x != k]
                m.d.sync += [sl.older[k][x].eq(0) for x in range(K) if x != k]


def _and_or(selects, values, shape):
    """The value whose select bit is set (at most one is), as an AND-OR; 0 when none."""
    out = Const(0, shape)
    for s, v in zip(selects, values):
        out = out | Mux(s, v, 0)
    return out


def _or_index(onehot, width: int):
    """The index of the set bit of a one-hot list (0 when none)."""
    return _and_or(onehot, range(len(onehot)), width)
