"""Conv engine of one HRN unit (docs/rtl.md, "Conv engine").

Bit-exact with `hrn_hw.golden.run_unit` for a unit whose layers are one convolution (BatchNorm
folded, weights and bias in ROMs as raw integers) followed by an optional LeakyReLU and an
optional pooling layer (each layer's kind says which stage runs it, `hrn_hw.layers` `rtl_stage`;
a pool before the LeakyReLU only when it commutes with it, as max pooling does):

    x   = fold_channels(map, in_channels)            exact sum of channel groups
    acc = sum x * w  (+ bias aligned)                 exact, zero padding (+ bottom/right up to K)
    y   = convert(acc, in_frac + w_frac -> out_fmt)   round (rnd: + half LSB, then >>), saturate
    y   = y > 0 ? y : convert(alpha * y, out_frac + alpha_frac -> out_fmt)
    y   = pool(y)                                     the pool kind's reduction of each window
                                                      (zero padding only below the kernel)

The input map's shape and format are chosen at run time: `calls` are the unit's entries of
the QuantModel's `reachable` list (`conv_engine_params`), and `call_id` picks one. Each call
has its own input shape, width and fraction bits, hence its own accumulator alignment and
output shift; those are per-call constants (a mux on the latched call id; the bias ROM holds
the aligned bias plus the rounding half-LSB per call).

Interface (clock `clk`, synchronous reset `rst`), streams of WORDS words per beat (docs/rtl.md
"Multi-word streams"; with WORDS = 1 `in_data` / `out_data` are the signed words themselves):
- `call_id`: index into `calls`; sampled with the frame's first input handshake.
- input stream `in_valid` / `in_ready` / `in_data` (words of the widest call's width; pixels
  are sent as their non-negative values): the map's raw integers in flat CHW order, C H W of
  them, ceil(C H W / WORDS) beats. The engine folds them into its own map memory.
- output stream `out_valid` / `out_ready` / `out_data` (out format words) / `out_last`: the
  unit's output map in flat CHW order; `out_last` marks the last beat.
- `busy`: a frame is in flight (not waiting for its first input).

Phases (no overlap between frames):
1. LOAD (ceil(C H W / WORDS) + fold splits + 2 cycles): element j (flat CHW) is added into folded
   word a = j mod S (S = IC H W: channel c goes into c mod IC) by a read-modify-write; the map
   memory is WORDS banks (word a in bank a mod WORDS, row a // WORDS), so a run of at most
   WORDS consecutive folded words is one row access per bank. A beat is one such run unless a
   channel group ends inside it (a wrap of a to 0): it then takes one cycle per run ("fold
   split", in_ready low meanwhile). The read-modify-write is pipelined (row address, read data
   register, sum written); the read data is forwarded from the two writes still in flight, so
   back-to-back runs on the same rows fold exactly; the first group overwrites (no clearing
   pass); 2 tail cycles (LOAD_TAIL) let the last write land. A call with C < IC reads its
   missing channels as zero in COMPUTE.
2. COMPUTE (G ceil(Ho Wo / PIXELS) max(IC K K, PIXELS) cycles, G = ceil(O / LANES)): for each
   channel group and chunk of PIXELS output pixels (raster order), one tap per cycle: each pixel
   lane reads its map word from its own copy of the map memory (every copy is written alike)
   and multiplies it with the LANES weights of the tap (LANES x PIXELS multipliers);
   out-of-bounds taps multiply zero. Pipeline: address / ROM read, map word and weight
   registers, product register, accumulate, then a serialiser hands the chunk's PIXELS
   accumulator sets, one per cycle, to LANES converters (convert + saturate; LeakyReLU as
   alpha * y in a register, then the activated value in a register; then the write into the
   lane's bank of the output memory). Per-call constants are registers off the latched call id.
3. DRAIN (9 + PIXELS - 1 cycles): the pipeline and the serialiser empty into the output memory.
4. OUT (ceil(O Ph Pw / WORDS) kp kp + 3 cycles): for each beat, kp * kp reads per word (kp = 1
   without pooling) with the pool kind's running reduction (`rtl_combine`: a running max for
   maxpool), each word slot reading its own copy of the output memory (address register, memory
   read), then the output register (the word the kind's `rtl_finish` makes of the reduction).
   Back-pressure stalls this pipeline only.

LANES (`lanes`, default all out_channels) output channels, PIXELS (`pixel_lanes`, default 1)
output pixels and WORDS (`words`, a power of two, default 1) stream words per cycle; the
defaults are the one-word engine.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hrn_hw import layers as layer_kinds
from hrn_hw.export.shapes import layer_out_hw, unit_calls
from hrn_hw.rtl.arith import chunks, const_mul
from hrn_hw.rtl.fixed import convert_expr, saturate, shift_right
from hrn_hw.rtl.rows import delay_line, mux_select, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

LOAD, COMPUTE, DRAIN, OUT = range(4)
MAC_DELAY = 3          # map word and weight registers, partial products (one MULT18 each), aligned product (timing closure)
SHIFT_DELAY = 1        # the converter's shifted accumulator, registered before the saturate (timing closure)
ACT_DELAY = 2          # LeakyReLU: slope product register, activated-value register (timing closure)
DRAIN_CYCLES = 3 + MAC_DELAY + SHIFT_DELAY + ACT_DELAY   # accumulate, shift, saturate, activate, write after the last tap's address
LOAD_TAIL = 2          # fold pipeline: read data register, then the write (timing closure)
OUT_OVERHEAD = 3       # address register, memory read, output register


def unit_layers(unit):
    """(conv, act or None, pool or None) of a unit the engine supports: each layer's kind says
    which stage of the engine runs it (`rtl_stage`: the conv, the converter's activation, the
    OUT phase's pooling); a kind the engine has no stage for, a second conv, activation or pool,
    or a pool before the activation that does not commute with it is NotImplementedError."""
    layers = list(unit.layers)
    kinds = [layer_kinds.of(l) for l in layers]
    if not layers or kinds[0].rtl_stage != "conv":
        raise NotImplementedError("conv engine: the unit must start with its convolution")
    for k in kinds[1:]:
        if k.rtl_stage is None:
            raise NotImplementedError(f"conv engine: no stage runs a {k.name} layer")
    rest = [k.rtl_stage for k in kinds[1:]]
    if "conv" in rest or len(set(rest)) != len(rest):
        raise NotImplementedError("conv engine: one conv, then at most one activation and one pooling layer")
    act = rest.index("act") + 1 if "act" in rest else None
    pool = rest.index("pool") + 1 if "pool" in rest else None
    if act is not None and pool is not None and pool < act and not kinds[pool].rtl_commutes_with_act:
        raise NotImplementedError(f"conv engine: {kinds[pool].name} before the activation (the engine "
                                  "activates, then pools)")
    return layers[0], None if act is None else layers[act], None if pool is None else layers[pool]


def conv_engine_params(qm, unit: int) -> dict:
    """ConvEngine arguments for unit `unit` of a QuantModel: the unit and its reachable calls
    (call_id = position in this list, the order of the manifest's `reachable`)."""
    calls = [dict(c) for c in unit_calls(qm, unit)]
    if not calls:
        raise ValueError(f"unit {unit} has no reachable call")
    return {"unit": qm.units[unit], "calls": calls}



def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def call_geometry(unit, call: dict, lanes: int | None = None, words: int = 1, pixel_lanes: int = 1) -> dict:
    """Shapes and per-call constants of one call (everything the engine and the cycle model use)."""
    conv, act, pool = unit_layers(unit)
    c, h, w = (int(v) for v in call["in_shape"])
    k, st, pad, o = conv.kernel, conv.stride, conv.padding, conv.out_channels
    lanes = o if lanes is None else int(lanes)
    ho, wo = layer_out_hw(h, w, k, st, pad)
    kp, sp = (pool.kernel, pool.stride) if pool is not None else (1, 1)
    reads = layer_kinds.of(pool).rtl_out_reads(pool) if pool is not None else 1
    ph, pw = layer_out_hw(ho, wo, kp, sp, 0) if pool is not None else (ho, wo)
    ic = unit.in_channels
    f = int(call["in_frac"]) + conv.w_fmt.frac
    top = max(f, conv.b_fmt.frac) if conv.bias is not None else f
    shift = top - conv.out_fmt.frac
    half = (1 << (shift - 1)) if (conv.out_fmt.rounding == "rnd" and shift > 0) else 0
    groups = -(-c // ic)
    s = ic * h * w
    return {"C": c, "H": h, "W": w, "IC": ic, "O": o, "K": k, "lanes": lanes,
            "G": -(-o // lanes), "Ho": ho, "Wo": wo, "kp": kp, "sp": sp, "Ph": ph, "Pw": pw,
            "n_in": c * h * w, "n_out": o * ph * pw, "taps": ic * k * k,
            "align": top - f, "top": top, "shift": shift, "half": half, "fold_groups": groups,
            "x_max": groups * (1 << (int(call["in_width"]) - 1)),
            # multi-word streams and pixel lanes
            "S": s, "words": words, "P": pixel_lanes, "Q": _cdiv(ho * wo, pixel_lanes),
            "T": max(ic * k * k, pixel_lanes), "in_beats": _cdiv(c * h * w, words),
            "out_beats": _cdiv(o * ph * pw, words),
            "fold_splits": sum(1 for g in range(1, groups) if g * s % words), "reads": reads}


def conv_engine_phases(unit, call: dict, lanes: int | None = None, words: int = 1, pixel_lanes: int = 1) -> dict:
    """Cycles per phase of one call (first input handshake to last output handshake)."""
    g = call_geometry(unit, call, lanes, words, pixel_lanes)
    return {
        "load": g["in_beats"] + g["fold_splits"] + LOAD_TAIL,   # one beat per cycle, + group ends inside beats
        "compute": g["G"] * g["Q"] * g["T"],            # one tap per cycle, LANES x PIXELS MACs
        "drain": DRAIN_CYCLES + g["P"] - 1,             # accumulate, serialise, convert, act, write
        "out": g["out_beats"] * g["reads"],             # the pool's reads (kp*kp) per output beat
        "out_pipeline": OUT_OVERHEAD,                   # address register, memory read, output register
    }


def conv_engine_cycles(unit, call: dict, lanes: int | None = None, words: int = 1, pixel_lanes: int = 1) -> int:
    """Conv engine latency of one call, W = words, P = pixel_lanes:
    ceil(C H W / W) + splits + G ceil(Ho Wo / P) max(IC K^2, P) + ceil(O Ph Pw / W) kp^2 + P + 13
    (splits: channel groups ending inside a beat); W = P = 1: C H W + G Ho Wo IC K^2 + O Ph Pw kp^2 + 14
    (timing closure: the MAC's map-word, weight, partial-product and product registers add MAC_DELAY = 3, the
    converter's shift register SHIFT_DELAY = 1 and the LeakyReLU's two registers ACT_DELAY = 2
    to the drain, the fold's read-data register
    LOAD_TAIL = 2 to LOAD, OUT's address register 1 to OUT_OVERHEAD = 3)."""
    return sum(conv_engine_phases(unit, call, lanes, words, pixel_lanes).values())


def _pick(index, values, shape):
    """values[index] (Python ints) as a mux chain over a run-time index."""
    out = Const(int(values[0]), shape)
    for k, v in enumerate(values[1:], start=1):
        out = Mux(index == k, Const(int(v), shape), out)
    return out


def _span(values):
    """A shape holding every one of `values` (and 0, 1)."""
    return range(min(0, *values), max(1, *values) + 1)


def _ge(x, t):
    """x >= t for an unsigned x (a constant 1 where t is a constant <= 0: no lint-constant compare)."""
    if isinstance(t, Const) and t.value <= 0:
        return Const(1, 1)
    return x >= t


def _word(data, i, width: int):
    """Word i (an int or a run-time index) of a packed beat, signed."""
    if isinstance(i, int):
        return data[i * width:(i + 1) * width].as_signed()
    return data.word_select(i, width).as_signed()


class ConvEngine(wiring.Component):
    """Parameters: `unit` (UnitQ), `calls` (its entries of QuantModel.reachable; call_id is the
    position), `lanes` (output channels in parallel; default all), `words` (stream words per
    beat, a power of two; default 1), `pixel_lanes` (output pixels in parallel; default 1)."""

    def __init__(self, unit, calls: list, lanes: int | None = None, words: int = 1, pixel_lanes: int = 1):
        conv, act, pool = unit_layers(unit)
        self.unit, self.conv, self.act, self.pool = unit, conv, act, pool
        self.calls = [dict(c) for c in calls]
        if not self.calls:
            raise ValueError("conv engine needs at least one call")
        o = conv.out_channels
        self.lanes = o if lanes is None else int(lanes)
        if not 1 <= self.lanes <= o:
            raise ValueError(f"lanes must be in [1, {o}]")
        self.words, self.pixel_lanes = int(words), int(pixel_lanes)
        if self.words < 1 or self.words & (self.words - 1):
            raise ValueError("words must be a power of two")
        if self.pixel_lanes < 1:
            raise ValueError("pixel_lanes must be at least 1")
        self.geo = [call_geometry(unit, c, self.lanes, self.words, self.pixel_lanes) for c in self.calls]
        for c, g in zip(self.calls, self.geo):
            if "out_shape" in c and list(c["out_shape"]) != [g["O"], g["Ph"], g["Pw"]]:
                raise ValueError(f"call {c}: out_shape disagrees with the unit's layers")
        self.in_width = max(int(c["in_width"]) for c in self.calls)
        self.x_width = max(2 * g["x_max"] for g in self.geo).bit_length() + 1
        w = conv.weight.reshape(o, -1).astype(int)
        wsum = int(abs(w).sum(axis=1).max())
        bias = conv.bias.astype(int) if conv.bias is not None else [0] * o
        self.inits = []
        for g in self.geo:
            bsh = g["top"] - conv.b_fmt.frac if conv.bias is not None else 0
            self.inits.append([(int(b) << bsh) + g["half"] for b in bias])
        bound = max((g["x_max"] * wsum << g["align"]) + max(abs(v) for v in init)
                    for g, init in zip(self.geo, self.inits))
        self.acc_width = bound.bit_length() + 2
        W, ow = self.words, conv.out_fmt.width
        super().__init__({
            "call_id": In(range(max(2, len(self.calls)))),
            **stream_in("in", signed(self.in_width) if W == 1 else W * self.in_width),
            **stream_out("out", signed(ow) if W == 1 else W * ow, last=True),
            "busy": Out(1),
        })

    # ---- helpers of elaborate ---------------------------------------------------------------

    def _per_call(self, idx, key):
        """The per-call constant `key` (a geometry entry, or a function of it) at call `idx`."""
        values = [key(g) if callable(key) else g[key] for g in self.geo]
        return _pick(idx, values, _span(values))

    def _per_call_r(self, m, s, key, name=None):
        """The per-call constant `key` at the latched call id, in a register (reloaded every
        cycle: it lags s.cid by one cycle, and s.cid is latched LOAD_TAIL + 1 or more cycles
        before COMPUTE, so it is settled in COMPUTE, DRAIN and OUT)."""
        values = [key(g) if callable(key) else g[key] for g in self.geo]
        if len(set(values)) == 1:
            return Const(int(values[0]), _span(values))
        key_ = tuple(values)
        if key_ not in self._pr:                 # one register per distinct value list
            r = Signal(_span(values), name=name or f"pc{len(self._pr)}")
            self._pr[key_] = r
        return self._pr[key_]

    def _map_memory(self, m):
        """PIXELS copies (one per pixel lane) of WORDS banks (folded word a: bank a mod WORDS,
        row a // WORDS); returns [copy][bank] = (write port, read port). The read ports are not
        transparent (no bypass logic after the block RAM): LOAD forwards its own writes."""
        rows = max(2, _cdiv(max(g["S"] for g in self.geo), self.words))
        copies = []
        for p in range(self.pixel_lanes):
            banks = []
            for k in range(self.words):
                mem = memory.Memory(shape=signed(self.x_width), depth=rows, init=[])
                m.submodules[f"map{p}_{k}"] = mem
                wr = mem.write_port()
                banks.append((wr, mem.read_port()))
            copies.append(banks)
        return copies

    def _load(self, m, s, copies):
        """LOAD: fold each beat's words into the map memory, one run of consecutive folded words
        (a beat, or its part before / after a channel group's end) per cycle. The fold is a
        three-stage read-modify-write per bank: A the row address (read issued), B the read data
        registered (forwarded from the two writes the read cannot see yet: the one in C now and
        the one done at the edge it was sampled on), C the sum written. The words left in the
        channel group (rs) and in the frame (rn) are counted down; the first beat takes them
        from call_id. After the last run LOAD_TAIL cycles let the last write land."""
        W, lw = self.words, self.words.bit_length() - 1
        iw = self.in_width
        take = self.in_valid & self.in_ready
        tail = Signal(range(LOAD_TAIL + 1))
        m.d.comb += self.in_ready.eq((s.phase == LOAD) & ~s.extra & (tail == 0))
        held = Signal(len(self.in_data))             # the beat whose runs are not all folded yet
        pos = Signal(range(max(2, W)))               # its next word (W = 1: a beat is one run)
        ja = Signal(range(max(g["S"] for g in self.geo) + 1))   # folded address of the run's first word
        add = Signal()                               # past the first channel group: add, not overwrite
        src = Mux(s.extra, held, self.in_data[:len(held)]) if W > 1 else self.in_data
        p0 = Mux(s.extra, pos, 0)
        S_v = [g["S"] for g in self.geo]
        n_v = [g["n_in"] for g in self.geo]
        S_in = _pick(self.call_id, S_v, _span(S_v))
        S_r = Signal(_span(S_v))                     # S of the frame's call (latched)
        rs = Signal(_span(S_v))                      # words left in the channel group
        rn = Signal(_span(n_v))                      # words left in the frame
        rs_e = Mux(s.waiting, S_in, rs)
        rn_e = Mux(s.waiting, _pick(self.call_id, n_v, _span(n_v)), rn)
        run = Signal(range(W + 1))
        m.d.comb += run.eq(W - p0)                   # run = min(W - p0, rs, rn)
        with m.If(rs_e < W - p0):
            m.d.comb += run.eq(rs_e)
        with m.If((rn_e < rs_e) & (rn_e < W - p0)):
            m.d.comb += run.eq(rn_e)
        active = s.extra | take
        lo = ja[:lw] if lw else Const(0, 1)
        wadd2 = Signal()
        for k, (wr_k, rd_k) in enumerate(copies[0]):
            d = (k - lo)[:lw] if lw else Const(0, 1)
            row = (ja >> lw) + (lo > k) if k < W - 1 else ja >> lw   # the run wraps past bank W-1
            # stage A -> B
            wv, wrow = Signal(name=f"wv{k}"), Signal.like(wr_k.addr, name=f"wrow{k}")
            wd = Signal(signed(iw), name=f"wd{k}")
            hz_c, hz_d = Signal(name=f"hzc{k}"), Signal(name=f"hzd{k}")
            # stage B -> C
            wv2, wrow2 = Signal(name=f"wv2_{k}"), Signal.like(wr_k.addr, name=f"wrow2_{k}")
            wd2, rdr = Signal(signed(iw), name=f"wd2_{k}"), Signal(signed(self.x_width), name=f"rdr{k}")
            # the write done (stage D)
            wdd = Signal(signed(self.x_width), name=f"wdd{k}")
            word = _word(src, (k + p0 - lo)[:lw], iw) if lw else _word(src, 0, iw)
            m.d.sync += [wv.eq(active & (d < run)), wrow.eq(row), wd.eq(word),
                         hz_c.eq(wv & (wrow == row)), hz_d.eq(wv2 & (wrow2 == row))]
            m.d.comb += rd_k.addr.eq(Mux(s.phase == LOAD, row, s.crow[0]))
            m.d.sync += [wv2.eq(wv), wrow2.eq(wrow), wd2.eq(wd)]
            total = Signal(signed(self.x_width), name=f"fold{k}")
            m.d.comb += total.eq(Mux(wadd2, rdr, 0) + wd2)
            m.d.sync += [rdr.eq(Mux(hz_c, total, Mux(hz_d, wdd, rd_k.data))), wdd.eq(total)]
            for banks in copies:
                wr = banks[k][0]
                m.d.comb += [wr.en.eq(wv2), wr.addr.eq(wrow2), wr.data.eq(total)]
        m.d.sync += [s.wadd.eq(add), wadd2.eq(s.wadd)]
        last = rn_e == run
        wrap = rs_e == run
        with m.If(tail != 0):
            m.d.sync += tail.eq(tail - 1)
            with m.If(tail == 1):
                m.d.sync += s.phase.eq(COMPUTE)
        with m.If((s.phase == LOAD) & active):
            with m.If(s.waiting):
                m.d.sync += [s.cid.eq(self.call_id), S_r.eq(S_in), s.waiting.eq(0)]
            if W > 1:
                with m.If(~s.extra):
                    m.d.sync += held.eq(src)
                done = (p0 + run == W) | last
                m.d.sync += [s.extra.eq(~done), pos.eq(p0 + run)]
            m.d.sync += [rn.eq(rn_e - run), rs.eq(rs_e - run), ja.eq(ja + run)]
            with m.If(wrap):
                m.d.sync += [ja.eq(0), add.eq(1), rs.eq(Mux(s.waiting, S_in, S_r))]
            with m.If(last):
                m.d.sync += [ja.eq(0), add.eq(0), s.extra.eq(0), tail.eq(LOAD_TAIL)]
        with m.If(s.phase == LOAD):
            s.start_compute()

    def elaborate(self, platform):
        """The frame state and the map memory, then COMPUTE (address, fetch, serialiser, the
        lanes), LOAD, OUT and the phase machine."""
        m = Module()
        self._pr = {}                            # the per-call registers (_per_call_r)
        dm = self._dims()
        s = self._state(m)
        copies = self._map_memory(m)
        c = self._address(m, s, dm, copies)
        x = self._fetch(m, s, dm, c, copies)
        sh = self._per_call_shifts(m, s)
        ser = self._serialiser(m, s, dm, c, x)
        out_banks = self._lanes(m, s, dm, c, x, sh, ser)
        self._load(m, s, copies)
        o_reset = self._out(m, s, out_banks, dm.dim)
        self._sequencer(m, s, dm, c, x, o_reset)
        for values, r in self._pr.items():       # unconditional: reloaded every cycle
            m.d.sync += r.eq(_pick(s.cid, values, _span(values)))
        return m

    def _dims(self):
        """Sizes every phase uses: groups G, taps N, cycles per chunk T, the largest planes and
        the counter and address shapes."""
        conv, geo, L, P = self.conv, self.geo, self.lanes, self.pixel_lanes
        O, K, st, pad, IC = conv.out_channels, conv.kernel, conv.stride, conv.padding, self.unit.in_channels
        G, N = -(-O // L), IC * K * K
        Hm, Wm = max(g["H"] for g in geo), max(g["W"] for g in geo)
        Hom, Wom = max(g["Ho"] for g in geo), max(g["Wo"] for g in geo)
        amax = ((Hom + P + 1) * st + pad + K) * (Wm + 1) + max(g["S"] for g in geo) + (Wom + 1) * st + pad + K
        return SimpleNamespace(
            O=O, K=K, st=st, pad=pad, IC=IC, G=G, N=N, T=max(N, P), lw=self.words.bit_length() - 1,
            Hom=Hom, Wom=Wom, bank_depth=G * Hom * Wom,
            dim=range(max(Hm, Wm, Hom, Wom, K) + 2),
            pdim=range(max(Hom, Wom) + P + 2),
            sdim=signed(((max(Hom, Wom) + P + 2) * st + pad + K + max(Hm, Wm)).bit_length() + 2),
            sadr=signed(amax.bit_length() + 2))

    def _state(self, m):
        """The frame state LOAD and the phase machine share: phase, the latched call id, the
        waiting flag (LOAD before the frame's first input), the held beat's flag."""
        s = SimpleNamespace()
        s.phase = phase = Signal(range(4))
        s.cid = cid = Signal(range(max(2, len(self.calls))))
        s.waiting = Signal(init=1)                               # LOAD, no input taken yet
        s.extra = Signal()                                       # a held beat has runs left
        s.wadd = Signal()
        m.d.comb += self.busy.eq(~s.waiting)
        return s

    def _address(self, m, s, dm, copies):
        """COMPUTE's address stage: the shared tap counters, each pixel lane's window origin and
        its map address (s.crow: row; bsel: bank) and in-bounds flag. Returns the counters,
        lane_init (the statements that put lane p on pixel p of a call), restart (those that
        start a call's COMPUTE), tap_ok, inb, bsel. The window origin is kept as registers
        (ix0 = ox st - pad, iy0 = oy st - pad, base), so a tap's row / column is one add."""
        P = self.pixel_lanes
        pr = lambda key: self._per_call_r(m, s, key)  # noqa: E731
        K, st, pad, IC, T, N, lw = dm.K, dm.st, dm.pad, dm.IC, dm.T, dm.N, dm.lw
        pdim, sdim, sadr = dm.pdim, dm.sdim, dm.sadr
        g_, q = Signal(range(max(2, dm.G))), Signal(range(max(2, max(g["Q"] for g in self.geo))))
        ci, ky, kx = Signal(range(max(2, IC))), Signal(range(max(2, K))), Signal(range(max(2, K)))
        t = Signal(range(max(2, T)))
        toff = Signal(sadr)                          # ci * H W + ky * W + kx of the call
        ox = [Signal(pdim, name=f"ox{p}") for p in range(P)]
        oy = [Signal(pdim, name=f"oy{p}") for p in range(P)]
        base = [Signal(sadr, name=f"base{p}") for p in range(P)]   # (oy st - pad) W + ox st - pad
        ix0 = [Signal(sdim, name=f"ix0_{p}") for p in range(P)]    # ox st - pad
        iy0 = [Signal(sdim, name=f"iy0_{p}") for p in range(P)]    # oy st - pad
        inits = [(pr(lambda g, p=p: p % g["Wo"]), pr(lambda g, p=p: p // g["Wo"]),
                  pr(lambda g, p=p: (p // g["Wo"] * st - pad) * g["W"] + p % g["Wo"] * st - pad))
                 for p in range(P)]

        def lane_init():
            """Pixel lane p starts at pixel p of the call's raster (registered per-call values)."""
            stmts = []
            for p, (x0, y0, b0) in enumerate(inits):
                stmts += [ox[p].eq(x0), oy[p].eq(y0), base[p].eq(b0),
                          ix0[p].eq(const_mul(x0, st) - pad), iy0[p].eq(const_mul(y0, st) - pad)]
            return stmts

        # (a closure over the counters, as before the split: it keeps the tuple-assigned ones
        # anonymous in the Verilog, which stays byte-identical)
        def restart():
            """The counters at the first tap of the first chunk of a call."""
            return [g_.eq(0), q.eq(0), ci.eq(0), ky.eq(0), kx.eq(0), t.eq(0), toff.eq(0), *lane_init()]

        H_c, W_c, C_c = pr("H"), pr("W"), pr("C")
        tap_ok = (t < N) if T > N else Const(1, 1)
        s.crow, bsel, inb = [], [], []
        for p in range(P):
            iy = Signal(sdim, name=f"iy{p}")
            ix = Signal(sdim, name=f"ix{p}")
            a = Signal(sadr, name=f"a{p}")
            m.d.comb += [iy.eq(iy0[p] + ky), ix.eq(ix0[p] + kx), a.eq(base[p] + toff)]
            # a channel the call does not have (C < IC) folds to zero: its map words are stale
            inb.append((iy >= 0) & (iy < H_c) & (ix >= 0) & (ix < W_c) & (ci < C_c) & tap_ok)
            s.crow.append(a[lw:])
            bsel.append(a[:lw] if lw else Const(0, 1))
        for p, banks in enumerate(copies[1:], start=1):
            for _, rd in banks:
                m.d.comb += rd.addr.eq(s.crow[p])
        for banks in copies:
            for _, rd in banks:
                m.d.comb += rd.en.eq(1)
        return SimpleNamespace(g_=g_, q=q, ci=ci, ky=ky, kx=kx, t=t, toff=toff, ox=ox, oy=oy, base=base,
                               ix0=ix0, iy0=iy0, lane_init=lane_init, restart=restart, tap_ok=tap_ok, inb=inb, bsel=bsel)

    def _fetch(self, m, s, dm, c, copies):
        """COMPUTE's stage 1: the tap's flags registered, each pixel lane's map word x1 (zero
        out of bounds), then registered (xr) for the lanes' product registers (MAC_DELAY stages
        before the accumulate); the flags delayed to the accumulate (va, firsta, tva); v2: the
        chunk's sums are final. Returns tap_end, va, firsta, tva, v2, xr."""
        P = self.pixel_lanes
        computing = s.phase == COMPUTE
        tap_end = c.t == dm.T - 1
        v1, first1, last1, tv1, v2 = Signal(), Signal(), Signal(), Signal(), Signal()
        inb1 = [Signal(name=f"inb1_{p}") for p in range(P)]
        bsel1 = [Signal(len(b), name=f"bsel1_{p}") for p, b in enumerate(c.bsel)]
        m.d.sync += [v1.eq(computing), first1.eq(c.t == 0), last1.eq(tap_end), tv1.eq(c.tap_ok)]
        va, firsta, lasta, tva = (delay_line(m, sig, MAC_DELAY)[-1] for sig in (v1, first1, last1, tv1))
        m.d.sync += v2.eq(va & lasta)
        m.d.sync += [x.eq(y) for x, y in zip(inb1 + bsel1, c.inb + c.bsel)]
        x1 = [Mux(inb1[p], mux_select([rd.data for _, rd in copies[p]], bsel1[p]), 0) for p in range(P)]
        xr = [Signal(signed(self.x_width), name=f"xr{p}") for p in range(P)]
        m.d.sync += [r.eq(v) for r, v in zip(xr, x1)]
        return SimpleNamespace(tap_end=tap_end, va=va, firsta=firsta, tva=tva, v2=v2, xr=xr)

    def _per_call_shifts(self, m, s):
        """The call's accumulator alignment and output shift (align_c, shift_c) and the sets of
        them over the calls (aligns, shifts)."""
        geo = self.geo
        aligns = sorted({g["align"] for g in geo})
        shifts = sorted({g["shift"] for g in geo})
        align_c = Signal(range(max(aligns) + 2))
        shift_c = Signal(signed(max(abs(v) for v in shifts).bit_length() + 2))
        m.d.comb += [align_c.eq(self._per_call_r(m, s, "align")), shift_c.eq(self._per_call_r(m, s, "shift"))]
        return SimpleNamespace(aligns=aligns, shifts=shifts, align_c=align_c, shift_c=shift_c)

    def _serialiser(self, m, s, dm, c, x):
        """The serialiser: the chunk's P accumulator sets, one per cycle, to the converters, and
        the output address of each (oa3, valid v3). Sets s.start_compute (the statements that
        start COMPUTE for a call). Returns sv (a set is on the converters), oa3, v3."""
        P = self.pixel_lanes
        pr = lambda key: self._per_call_r(m, s, key)  # noqa: E731
        Hom, Wom, pdim, dim = dm.Hom, dm.Wom, dm.pdim, dm.dim
        scnt = Signal(range(max(2, P)))              # sets left after the current one
        sv = x.v2 | (scnt != 0)
        with m.If(x.v2):
            m.d.sync += scnt.eq(P - 1)
        with m.Elif(scnt != 0):
            m.d.sync += scnt.eq(scnt - 1)
        sg, spix = Signal(range(max(2, dm.G))), Signal(range(max(g["Q"] for g in self.geo) * P + 1))
        soy, sox = Signal(pdim), Signal(dim)
        Ho_c, Wo_c = pr("Ho"), pr("Wo")
        oa3, v3 = Signal(range(dm.bank_depth)), Signal()
        m.d.sync += [oa3.eq(const_mul(sg, Hom * Wom) + const_mul(soy, Wom) + sox), v3.eq(sv & (soy < Ho_c))]
        # to the activated value's register (SHIFT_DELAY + ACT_DELAY converter stages after the convert)
        delay = SHIFT_DELAY + ACT_DELAY
        oa3, v3 = delay_line(m, oa3, delay)[-1], delay_line(m, v3, delay)[-1]
        with m.If(sv):
            m.d.sync += [sox.eq(sox + 1), spix.eq(spix + 1)]
            with m.If(sox == Wo_c - 1):
                m.d.sync += [sox.eq(0), soy.eq(soy + 1)]
            with m.If(spix == pr(lambda g: g["Q"] * P - 1)):
                m.d.sync += [sox.eq(0), soy.eq(0), spix.eq(0), sg.eq(sg + 1)]

        def start_compute():
            """Every LOAD cycle: the COMPUTE counters at their first tap (the call id settles
            at least LOAD_TAIL cycles before COMPUTE)."""
            m.d.sync += [*c.restart(), scnt.eq(0), sg.eq(0), spix.eq(0), soy.eq(0), sox.eq(0)]
        s.start_compute = start_compute
        return SimpleNamespace(oa3=oa3, v3=v3)

    def _lanes(self, m, s, dm, c, x, sh, ser):
        """The LANES output-channel lanes: per lane a weight ROM and a bias ROM, P accumulators
        (one per pixel lane), the hold registers the serialiser shifts, a converter, and the
        lane's output bank (a copy per word slot). Returns out_banks[slot][lane] (read ports)."""
        conv, L, W, P = self.conv, self.lanes, self.words, self.pixel_lanes
        of, O, G, N = conv.out_fmt, dm.O, dm.G, dm.N
        w_all = conv.weight.reshape(O, -1).astype(int)
        aligns, align_c = sh.aligns, sh.align_c
        out_banks = [[] for _ in range(W)]
        for lane in range(L):
            chans = [gi * L + lane for gi in range(G)]
            winit = [int(w_all[o, tt]) if o < O else 0 for o in chans for tt in range(N)]
            rom = memory.Memory(shape=signed(conv.w_fmt.width), depth=G * N, init=winit)
            m.submodules[f"w{lane}"] = rom
            wrd = rom.read_port()
            m.d.comb += wrd.addr.eq(const_mul(c.g_, N) + c.t)
            binit = [init[o] if o < O else 0 for init in self.inits for o in chans]
            binit += [0] * (2 - len(binit))      # depth >= 2: a 1-word memory has a 0-bit address
            brom = memory.Memory(shape=signed(self.acc_width), depth=len(binit), init=binit)
            m.submodules[f"b{lane}"] = brom
            brd = brom.read_port()
            m.d.comb += brd.addr.eq(const_mul(s.cid, G) + c.g_)

            wr = Signal(signed(conv.w_fmt.width), name=f"wr{lane}")   # the weight, beside xr
            m.d.sync += wr.eq(wrd.data)
            accs = []
            for p in range(P):
                # one registered partial product per multiplier-sized piece of x, then their sum
                pps = []
                for k, piece in chunks(x.xr[p], self.x_width, True):
                    pp = Signal(signed(len(piece) + len(wr) + 1), name=f"pp{lane}_{p}_{k}")
                    m.d.sync += pp.eq(piece * wr)
                    pps.append(pp << k)
                prod = tree_sum(pps)
                sprod = prod << aligns[0]
                for a in aligns[1:]:
                    sprod = Mux(align_c == a, prod << a, sprod)
                # the aligned product in a register (mod 2^acc_width, as the accumulate keeps it)
                pr = Signal(signed(self.acc_width), name=f"prod{lane}_{p}")
                m.d.sync += pr.eq(sprod)
                acc = Signal(signed(self.acc_width), name=f"acc{lane}_{p}")
                with m.If(x.va & x.tva):
                    m.d.sync += acc.eq(Mux(x.firsta, brd.data, acc) + pr)
                accs.append(acc)
            hold = [Signal(signed(self.acc_width), name=f"hold{lane}_{p}") for p in range(P - 1)]
            with m.If(x.v2):
                m.d.sync += [h.eq(a) for h, a in zip(hold, accs[1:])]
            with m.Else():
                m.d.sync += [h.eq(n) for h, n in zip(hold, hold[1:])]
            z = self._convert(m, Mux(x.v2, accs[0], hold[0]) if hold else accs[0], sh.shift_c, sh.shifts, lane)
            for slot in range(W):        # one copy of the lane's output bank per word slot
                bank = memory.Memory(shape=signed(of.width), depth=dm.bank_depth, init=[])
                m.submodules[f"bank{lane}" + (f"_{slot}" if W > 1 else "")] = bank
                bwr = bank.write_port()
                m.d.comb += [bwr.en.eq(ser.v3), bwr.addr.eq(ser.oa3), bwr.data.eq(z)]
                out_banks[slot].append(bank.read_port())
        return out_banks

    def _sequencer(self, m, s, dm, c, x, o_reset):
        """The phase machine (LOAD moves on to COMPUTE itself, OUT back to LOAD) and COMPUTE's
        tap counters: kx, ky, ci over the window, then the next chunk, then the next group."""
        P, K, IC, G = self.pixel_lanes, dm.K, dm.IC, dm.G
        phase = s.phase
        pr = lambda key: self._per_call_r(m, s, key)  # noqa: E731
        drain = Signal(range(DRAIN_CYCLES + P))
        with m.If(phase == COMPUTE):
            m.d.sync += [c.kx.eq(c.kx + 1), c.t.eq(c.t + 1), c.toff.eq(c.toff + 1)]
            with m.If(c.kx == K - 1):
                m.d.sync += [c.kx.eq(0), c.ky.eq(c.ky + 1), c.toff.eq(c.toff + pr(lambda g: g["W"] - K + 1))]
                with m.If(c.ky == K - 1):
                    m.d.sync += [c.ky.eq(0), c.ci.eq(c.ci + 1),
                                 c.toff.eq(c.toff + pr(lambda g: g["H"] * g["W"] - (K - 1) * g["W"] - K + 1))]
                    with m.If(c.ci == IC - 1):
                        m.d.sync += [c.ci.eq(0), c.toff.eq(0)]
            with m.If(x.tap_end):
                m.d.sync += [c.ci.eq(0), c.ky.eq(0), c.kx.eq(0), c.t.eq(0), c.toff.eq(0), c.q.eq(c.q + 1)]
                self._next_chunk(m, s, c)
                with m.If(c.q == pr(lambda g: g["Q"] - 1)):
                    m.d.sync += [c.q.eq(0), c.g_.eq(c.g_ + 1), *c.lane_init()]
                    with m.If(c.g_ == G - 1):
                        m.d.sync += [phase.eq(DRAIN), drain.eq(0)]
        with m.Elif(phase == DRAIN):
            m.d.sync += drain.eq(drain + 1)
            with m.If(drain == DRAIN_CYCLES + P - 2):
                m.d.sync += [phase.eq(OUT), *o_reset]
        with m.Elif(phase == OUT):
            with m.If(self.out_valid & self.out_ready & self.out_last):
                m.d.sync += [phase.eq(LOAD), self.out_last.eq(0), s.waiting.eq(1)]

    def _convert(self, m, acc, shift_c, shifts, lane):
        """One converter: (acc + half, folded into the bias ROM) >> shift into a register, y =
        its saturation into a register, then LeakyReLU in the out format, y > 0 ? y : convert(alpha * y, frac +
        alpha_frac): alpha * y (shift-and-add) and y in registers, then the activated value in a
        register; returns it (1 + SHIFT_DELAY + ACT_DELAY cycles after `acc`; without LeakyReLU, y
        delayed)."""
        of = self.conv.out_fmt
        qv = shift_right(acc, shifts[0])
        for sh in shifts[1:]:
            qv = Mux(shift_c == sh, shift_right(acc, sh), qv)
        qr = Signal(signed(len(qv)), name=f"q{lane}")
        y2 = Signal(signed(of.width), name=f"y{lane}")
        m.d.sync += [qr.eq(qv), y2.eq(saturate(qr, of))]
        if self.act is None:
            return delay_line(m, y2, ACT_DELAY)[-1]
        ya = const_mul(y2, int(self.act.alpha))
        yp = Signal(signed(len(ya)), name=f"yp{lane}")      # alpha * y
        yd = Signal(signed(of.width), name=f"yd{lane}")     # y
        yz = Signal(signed(of.width), name=f"yz{lane}")     # the activated value
        m.d.sync += [yp.eq(ya), yd.eq(y2),
                     yz.eq(Mux(yd > 0, yd, convert_expr(yp, of.frac + self.act.alpha_frac, of)))]
        assert ACT_DELAY == 2
        return yz

    def _next_chunk(self, m, s, c):
        """Each pixel lane moves P pixels on in the call's raster (dx = P mod Wo, dy = P // Wo,
        plus a row wrap), its window origin (ix0, iy0, base) with it (registered per-call steps)."""
        P, st = self.pixel_lanes, self.conv.stride
        pr = lambda key: self._per_call_r(m, s, key)  # noqa: E731
        dx, dy, Wo_c = pr(lambda g: P % g["Wo"]), pr(lambda g: P // g["Wo"]), pr("Wo")
        inc = pr(lambda g: st * (P % g["Wo"]) + st * (P // g["Wo"]) * g["W"])
        inc_wrap = pr(lambda g: st * (P % g["Wo"] - g["Wo"]) + st * (P // g["Wo"] + 1) * g["W"])
        ix_inc, ix_wrap = pr(lambda g: st * (P % g["Wo"])), pr(lambda g: st * (P % g["Wo"] - g["Wo"]))
        iy_inc, iy_wrap = pr(lambda g: st * (P // g["Wo"])), pr(lambda g: st * (P // g["Wo"] + 1))
        for x, y, b, ix0, iy0 in zip(c.ox, c.oy, c.base, c.ix0, c.iy0):
            nx = x + dx
            wrap = nx >= Wo_c
            m.d.sync += [x.eq(Mux(wrap, nx - Wo_c, nx)), y.eq(y + dy + wrap), b.eq(b + Mux(wrap, inc_wrap, inc)),
                         ix0.eq(ix0 + Mux(wrap, ix_wrap, ix_inc)), iy0.eq(iy0 + Mux(wrap, iy_wrap, iy_inc))]

    def _out(self, m, s, out_banks, dim):
        """OUT: WORDS word slots, each reading its own copy of the output banks: kp*kp reads per
        beat with a running max per slot, then the output register (back-pressure stalls only
        this pipeline). Stages: a (counters; the read address and flags into registers), r (the
        memory read), b (the running max, then the output register). Returns the statements
        that start it."""
        geo, L, W, O = self.geo, self.lanes, self.words, self.conv.out_channels
        kp, sp, ow = geo[0]["kp"], geo[0]["sp"], self.conv.out_fmt.width
        pk = layer_kinds.of(self.pool) if self.pool is not None else None
        Hom, Wom = max(g["Ho"] for g in geo), max(g["Wo"] for g in geo)
        pc, cid = self._per_call, s.cid
        pr = lambda key: self._per_call_r(m, s, key)  # noqa: E731
        Ph_c, Pw_c, Ho_c, Wo_c = pr("Ph"), pr("Pw"), pr("Ho"), pr("Wo")
        dO = pr(lambda g: W // (g["Ph"] * g["Pw"]))              # a beat moves W elements on
        dY = pr(lambda g: W % (g["Ph"] * g["Pw"]) // g["Pw"])
        dX = pr(lambda g: W % g["Pw"])
        tX = pr(lambda g: g["Pw"] - W % g["Pw"])                        # spx + dX >= Pw
        tY0 = pr(lambda g: g["Ph"] - W % (g["Ph"] * g["Pw"]) // g["Pw"])  # spy + dY >= Ph
        tY1 = pr(lambda g: g["Ph"] - W % (g["Ph"] * g["Pw"]) // g["Pw"] - 1)
        dO1 = pr(lambda g: W // (g["Ph"] * g["Pw"]) + 1)
        dy, dx = Signal(range(max(2, kp))), Signal(range(max(2, kp)))
        beat = Signal(range(max(g["out_beats"] for g in geo) + 1))
        va = Signal()
        el_end = (dx == kp - 1) & (dy == kp - 1)
        final_a = el_end & (beat == pr(lambda g: g["out_beats"] - 1))
        step = (s.phase == OUT) & va
        vr, firstr, lastr, finalr = Signal(), Signal(), Signal(), Signal()
        vb, firstb, lastb, finalb = Signal(), Signal(), Signal(), Signal()
        out_free = ~self.out_valid | self.out_ready
        adv = ~(vb & lastb & ~out_free)
        words, start = [], [va.eq(1), dy.eq(0), dx.eq(0), beat.eq(0)]
        l2 = L.bit_length() - 1
        for i, banks in enumerate(out_banks):
            so = Signal(range(O + 2 * W + 2), name=f"so{i}")     # slot i's element (so, spy, spx)
            spy, spx = Signal(dim, name=f"spy{i}"), Signal(dim, name=f"spx{i}")
            start += [so.eq(pc(cid, lambda g, i=i: i // (g["Ph"] * g["Pw"]))),
                      spy.eq(pc(cid, lambda g, i=i: i % (g["Ph"] * g["Pw"]) // g["Pw"])),
                      spx.eq(pc(cid, lambda g, i=i: i % g["Pw"]))]
            cy, cx = const_mul(spy, sp) + dy, const_mul(spx, sp) + dx
            if L & (L - 1) == 0:                 # so // L, so % L
                og, ob = so >> l2, (so[:l2] if l2 else Const(0, 1))
            else:
                og = _pick(so, [o // L for o in range(O)], _span([o // L for o in range(O)]))
                ob = _pick(so, [o % L for o in range(O)], _span([o % L for o in range(O)]))
            raddr = Signal(range(max(2, -(-O // L) * Hom * Wom)), name=f"raddr{i}")
            inbr, okr = Signal(name=f"inbr{i}"), Signal(name=f"okr{i}")
            bankr = Signal(range(max(2, L)), name=f"bankr{i}")
            with m.If(adv):
                m.d.sync += [raddr.eq(const_mul(og, Hom * Wom) + const_mul(cy, Wom) + cx),
                             inbr.eq((cy < Ho_c) & (cx < Wo_c)), okr.eq(so < O), bankr.eq(ob)]
            for rp in banks:
                m.d.comb += [rp.addr.eq(raddr), rp.en.eq(adv)]
            inbb, okb = Signal(name=f"inbb{i}"), Signal(name=f"okb{i}")
            bankb = Signal(range(max(2, L)), name=f"bankb{i}")
            with m.If(adv):
                m.d.sync += [inbb.eq(inbr), okb.eq(okr), bankb.eq(bankr)]
            val = Mux(inbb, mux_select([rp.data for rp in banks], bankb), 0)
            # the pool's running reduction (max, sum, ...) over the kp*kp reads of a word
            mx = Signal(pk.rtl_acc_shape(ow, kp) if pk else signed(ow), name=f"{pk.rtl_acc_name if pk else 'mx'}{i}")
            mx_c = pk.rtl_combine(firstb, val, mx) if kp > 1 else val   # kp = 1: no reduction
            with m.If(adv & vb & ~lastb):
                m.d.sync += mx.eq(mx_c)
            y = pk.rtl_finish(mx_c, kp, ow) if pk else mx_c
            words.append(Mux(okb, y, 0).as_signed()[:ow] if W > 1 else y)
            with m.If(step & adv & el_end):
                # the wraps from thresholds (registers), not from the incremented values
                nx = spx + dX
                wx = _ge(spx, tX)
                ny = spy + dY + wx
                wy = Mux(wx, _ge(spy, tY1), _ge(spy, tY0))
                m.d.sync += [spx.eq(Mux(wx, nx - Pw_c, nx)), spy.eq(Mux(wy, ny - Ph_c, ny)),
                             so.eq(so + Mux(wy, dO1, dO))]
        self._out_register(m, words, SimpleNamespace(dy=dy, dx=dx, beat=beat, va=va, vr=vr, firstr=firstr,
                                                     lastr=lastr, finalr=finalr, vb=vb, firstb=firstb,
                                                     lastb=lastb, finalb=finalb, el_end=el_end, final_a=final_a,
                                                     step=step, adv=adv))
        return start

    def _out_register(self, m, words, o):
        """OUT's read stage flags (first / last read of a beat) through the address and read
        stages, the output register with its handshake, and the kp x kp read counter per beat
        (dx, dy, then the beat)."""
        kp = self.geo[0]["kp"]
        with m.If(o.adv):
            m.d.sync += [o.vr.eq(o.step), o.firstr.eq((o.dx == 0) & (o.dy == 0)), o.lastr.eq(o.el_end),
                         o.finalr.eq(o.final_a),
                         o.vb.eq(o.vr), o.firstb.eq(o.firstr), o.lastb.eq(o.lastr), o.finalb.eq(o.finalr)]
        with m.If(self.out_valid & self.out_ready):
            m.d.sync += self.out_valid.eq(0)
        with m.If(o.adv & o.vb & o.lastb):
            m.d.sync += [self.out_data.eq(Cat(*words) if self.words > 1 else words[0]), self.out_valid.eq(1),
                         self.out_last.eq(o.finalb)]
        with m.If(o.step & o.adv):
            m.d.sync += o.dx.eq(o.dx + 1)
            with m.If(o.dx == kp - 1):
                m.d.sync += [o.dx.eq(0), o.dy.eq(o.dy + 1)]
                with m.If(o.dy == kp - 1):
                    m.d.sync += [o.dy.eq(0), o.beat.eq(o.beat + 1)]
            with m.If(o.final_a):
                m.d.sync += o.va.eq(0)


__all__ = ["ConvEngine", "conv_engine_params", "conv_engine_cycles", "conv_engine_phases",
           "call_geometry", "unit_layers"]
