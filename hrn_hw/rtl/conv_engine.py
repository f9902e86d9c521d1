"""Conv engine of one HRN unit (docs/rtl.md, "Conv engine").

Bit-exact with `hrn_hw.golden.run_unit` for a unit whose layers are one convolution (BatchNorm
folded, weights and bias in ROMs as raw integers) followed by an optional LeakyReLU and an
optional max pooling (in either order):

    x   = fold_channels(map, in_channels)            exact sum of channel groups
    acc = sum x * w  (+ bias aligned)                 exact, zero padding (+ bottom/right up to K)
    y   = convert(acc, in_frac + w_frac -> out_fmt)   round (rnd: + half LSB, then >>), saturate
    y   = y > 0 ? y : convert(alpha * y, out_frac + alpha_frac -> out_fmt)
    y   = maxpool(y)                                  exact (zero padding only below the kernel)

The input map's shape and format are chosen at run time: `calls` are the unit's entries of
the QuantModel's `reachable` list (`conv_engine_params`), and `call_id` picks one. Each call
has its own input shape, width and fraction bits, hence its own accumulator alignment and
output shift; those are per-call constants (a mux on the latched call id; the bias ROM holds
the aligned bias plus the rounding half-LSB per call).

Interface (clock `clk`, synchronous reset `rst`):
- `call_id`: index into `calls`; sampled with the frame's first input handshake.
- input stream `in_valid` / `in_ready` / `in_data` (signed, the widest call's width; pixels
  are sent as their non-negative values): the map's raw integers in flat CHW order, exactly
  C * H * W of them for the call. The engine stores them (channel-folded) in its own map memory.
- output stream `out_valid` / `out_ready` / `out_data` (signed, out format width) /
  `out_last`: the unit's output map in flat CHW order.
- `busy`: a frame is in flight (not waiting for its first input).

Phases (no overlap between frames):
1. LOAD (C H W cycles): element (c, y, x) is added into map word (c mod IC, y, x) by a
   read-modify-write (the read port is transparent to the write port, so a 1x1 map folds too);
   the first IC channels overwrite, so no clearing pass is needed. A call with C < IC reads its
   missing channels as zero in COMPUTE.
2. COMPUTE (G Ho Wo IC K K cycles, G = ceil(O / LANES)): for each channel group, output pixel
   and tap, one map word is read and broadcast to LANES multiply-accumulate lanes, each with
   its own weight ROM (and bias ROM); out-of-bounds taps multiply zero. Pipeline: address /
   ROM read, accumulate, convert + saturate, LeakyReLU + write into the lane's bank of the
   output memory.
3. DRAIN (3 cycles): the pipeline empties into the output memory.
4. OUT (O Ph Pw kp kp + 2 cycles): for each output element, kp * kp reads of the output
   memory (kp = 1 without pooling) with a running max, then the output register. Back-pressure
   stalls this pipeline only.

LANES (the parallelism knob): output channels computed in parallel, one multiplier each;
default all out_channels (one MAC per output channel per cycle). Fewer lanes take
G = ceil(O / LANES) passes over the map.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.export.shapes import layer_out_hw, unit_calls

LOAD, COMPUTE, DRAIN, OUT = range(4)
DRAIN_CYCLES = 3       # accumulate, convert, activate + write after the last tap's address
OUT_OVERHEAD = 2       # memory read, output register


def unit_layers(unit):
    """(conv, act or None, pool or None) of a unit the engine supports."""
    layers = list(unit.layers)
    if not layers or layers[0].kind != "conv":
        raise NotImplementedError("conv engine: the unit must start with its convolution")
    rest = [l.kind for l in layers[1:]]
    if any(k == "conv" for k in rest) or len(set(rest)) != len(rest):
        raise NotImplementedError("conv engine: one conv, then at most one LeakyReLU and one maxpool")
    act = next((l for l in layers[1:] if l.kind == "leaky_relu"), None)
    pool = next((l for l in layers[1:] if l.kind == "maxpool"), None)
    return layers[0], act, pool


def conv_engine_params(qm, unit: int) -> dict:
    """ConvEngine arguments for unit `unit` of a QuantModel: the unit and its reachable calls
    (call_id = position in this list, the order of the manifest's `reachable`)."""
    calls = [dict(c) for c in unit_calls(qm, unit)]
    if not calls:
        raise ValueError(f"unit {unit} has no reachable call")
    return {"unit": qm.units[unit], "calls": calls}


def call_geometry(unit, call: dict, lanes: int | None = None) -> dict:
    """Shapes and per-call constants of one call (everything the engine and the cycle model use)."""
    conv, act, pool = unit_layers(unit)
    c, h, w = (int(v) for v in call["in_shape"])
    k, st, pad, o = conv.kernel, conv.stride, conv.padding, conv.out_channels
    lanes = o if lanes is None else int(lanes)
    ho, wo = layer_out_hw(h, w, k, st, pad)
    kp, sp = (pool.kernel, pool.stride) if pool is not None else (1, 1)
    ph, pw = layer_out_hw(ho, wo, kp, sp, 0) if pool is not None else (ho, wo)
    ic = unit.in_channels
    f = int(call["in_frac"]) + conv.w_fmt.frac
    top = max(f, conv.b_fmt.frac) if conv.bias is not None else f
    shift = top - conv.out_fmt.frac
    half = (1 << (shift - 1)) if (conv.out_fmt.rounding == "rnd" and shift > 0) else 0
    groups = -(-c // ic)
    return {"C": c, "H": h, "W": w, "IC": ic, "O": o, "K": k, "lanes": lanes,
            "G": -(-o // lanes), "Ho": ho, "Wo": wo, "kp": kp, "sp": sp, "Ph": ph, "Pw": pw,
            "n_in": c * h * w, "n_out": o * ph * pw, "taps": ic * k * k,
            "align": top - f, "top": top, "shift": shift, "half": half, "fold_groups": groups,
            "x_max": groups * (1 << (int(call["in_width"]) - 1))}


def conv_engine_phases(unit, call: dict, lanes: int | None = None) -> dict:
    """Cycles per phase of one call (first input handshake to last output handshake)."""
    g = call_geometry(unit, call, lanes)
    return {
        "load": g["n_in"],                                   # one input element per cycle
        "compute": g["G"] * g["Ho"] * g["Wo"] * g["taps"],  # one tap per cycle, LANES channels
        "drain": DRAIN_CYCLES,                               # accumulate, convert, act + write
        "out": g["n_out"] * g["kp"] * g["kp"],               # kp*kp reads per output element
        "out_pipeline": OUT_OVERHEAD,                        # memory read, output register
    }


def conv_engine_cycles(unit, call: dict, lanes: int | None = None) -> int:
    """Conv engine latency of one call: C H W + G Ho Wo IC K^2 + O Ph Pw kp^2 + 5."""
    return sum(conv_engine_phases(unit, call, lanes).values())


def _pick(index, values, shape):
    """values[index] (Python ints) as a mux chain over a run-time index."""
    out = Const(int(values[0]), shape)
    for k, v in enumerate(values[1:], start=1):
        out = Mux(index == k, Const(int(v), shape), out)
    return out


def _sat(q, fmt):
    return Mux(q > fmt.qmax, fmt.qmax, Mux(q < fmt.qmin, fmt.qmin, q))


def _shift(value, amount: int):
    return value >> amount if amount > 0 else value << -amount


class ConvEngine(wiring.Component):
    """Parameters: `unit` (UnitQ), `calls` (its entries of QuantModel.reachable; call_id is the
    position), `lanes` (output channels in parallel; default all)."""

    def __init__(self, unit, calls: list, lanes: int | None = None):
        conv, act, pool = unit_layers(unit)
        self.unit, self.conv, self.act, self.pool = unit, conv, act, pool
        self.calls = [dict(c) for c in calls]
        if not self.calls:
            raise ValueError("conv engine needs at least one call")
        o = conv.out_channels
        self.lanes = o if lanes is None else int(lanes)
        if not 1 <= self.lanes <= o:
            raise ValueError(f"lanes must be in [1, {o}]")
        self.geo = [call_geometry(unit, c, self.lanes) for c in self.calls]
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
        super().__init__({
            "call_id": In(range(max(2, len(self.calls)))),
            "in_valid": In(1),
            "in_ready": Out(1),
            "in_data": In(signed(self.in_width)),
            "out_valid": Out(1),
            "out_ready": In(1),
            "out_data": Out(signed(conv.out_fmt.width)),
            "out_last": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        conv, geo, L = self.conv, self.geo, self.lanes
        of = conv.out_fmt
        O, K, st, pad, IC = conv.out_channels, conv.kernel, conv.stride, conv.padding, self.unit.in_channels
        G, N = -(-O // L), IC * K * K
        kp, sp = geo[0]["kp"], geo[0]["sp"]
        Hm, Wm = max(g["H"] for g in geo), max(g["W"] for g in geo)
        Hom, Wom = max(g["Ho"] for g in geo), max(g["Wo"] for g in geo)
        map_depth, bank_depth = IC * Hm * Wm, G * Hom * Wom
        dim = range(max(Hm, Wm, Hom, Wom, K) + 2)
        sdim = signed(max(Hm, Wm, Hom, Wom, K, st * Hom + pad).bit_length() + 2)

        phase = Signal(range(4))
        cid = Signal(range(max(2, len(self.calls))))
        lcount = Signal(range(max(g["n_in"] for g in geo) + 1))
        m.d.comb += self.busy.eq((phase != LOAD) | (lcount != 0))
        first_in = (phase == LOAD) & (lcount == 0)
        cur = Mux(first_in, self.call_id, cid)

        def per_call(key, shape=dim, idx=None):
            return _pick(cur if idx is None else idx, [g[key] for g in geo], shape)

        # ---- map memory (channel-folded input) ---------------------------------------------
        m.submodules.map = mmem = memory.Memory(shape=signed(self.x_width), depth=map_depth, init=[])
        mwr = mmem.write_port()
        mrd = mmem.read_port(transparent_for=(mwr,))

        # ---- LOAD ---------------------------------------------------------------------------
        take = self.in_valid & self.in_ready
        m.d.comb += self.in_ready.eq(phase == LOAD)
        lx, ly, lc = Signal(dim), Signal(dim), Signal(range(max(2, IC)))
        lgrp = Signal()
        laddr = lc * (Hm * Wm) + ly * Wm + lx
        wv, wa, wadd = Signal(), Signal(range(map_depth)), Signal()
        wd = Signal(signed(self.in_width))
        m.d.sync += [wv.eq(take), wa.eq(laddr), wadd.eq(lgrp), wd.eq(self.in_data)]
        m.d.comb += [mwr.en.eq(wv), mwr.addr.eq(wa), mwr.data.eq(Mux(wadd, mrd.data, 0) + wd)]

        # ---- COMPUTE: address stage --------------------------------------------------------
        g_, oy, ox = Signal(range(max(2, G))), Signal(dim), Signal(dim)
        ci, ky, kx = Signal(range(max(2, IC))), Signal(range(max(2, K))), Signal(range(max(2, K)))
        t = Signal(range(max(2, N)))
        yb, xb = Signal(sdim), Signal(sdim)
        iy, ix = Signal(sdim), Signal(sdim)
        m.d.comb += [iy.eq(yb + ky), ix.eq(xb + kx)]
        H_c, W_c = per_call("H", idx=cid), per_call("W", idx=cid)
        Ho_c, Wo_c = per_call("Ho", idx=cid), per_call("Wo", idx=cid)
        C_c = per_call("C", range(max(g["C"] for g in geo) + 1), idx=cid)
        # a channel the call does not have (C < IC) folds to zero: its map words are stale
        inb = (iy >= 0) & (iy < H_c) & (ix >= 0) & (ix < W_c) & (ci < C_c)
        caddr = Signal(range(map_depth))
        m.d.comb += caddr.eq(ci * (Hm * Wm) + iy * Wm + ix)
        m.d.comb += [mrd.addr.eq(Mux(phase == LOAD, laddr, caddr)), mrd.en.eq(1)]
        computing = phase == COMPUTE
        tap_end = (kx == K - 1) & (ky == K - 1) & (ci == IC - 1)
        last_px = tap_end & (ox == Wo_c - 1) & (oy == Ho_c - 1)
        oaddr = Signal(range(bank_depth))
        m.d.comb += oaddr.eq(g_ * (Hom * Wom) + oy * Wom + ox)

        # stage 1 (accumulate), stage 2 (convert), stage 3 (activate + write)
        v1, first1, last1, inb1 = Signal(), Signal(), Signal(), Signal()
        oa1, oa2, oa3 = Signal.like(oaddr), Signal.like(oaddr), Signal.like(oaddr)
        v2, v3 = Signal(), Signal()
        m.d.sync += [v1.eq(computing), first1.eq(t == 0), last1.eq(tap_end), inb1.eq(inb), oa1.eq(oaddr),
                     v2.eq(v1 & last1), oa2.eq(oa1), v3.eq(v2), oa3.eq(oa2)]
        x1 = Mux(inb1, mrd.data, 0)

        aligns = sorted({g["align"] for g in geo})
        shifts = sorted({g["shift"] for g in geo})
        w_all = conv.weight.reshape(O, -1).astype(int)
        align_c = Signal(range(max(aligns) + 2))
        shift_c = Signal(signed(max(abs(v) for v in shifts).bit_length() + 2))
        m.d.comb += [align_c.eq(_pick(cid, [g["align"] for g in geo], range(max(aligns) + 2))),
                     shift_c.eq(_pick(cid, [g["shift"] for g in geo], shift_c.shape()))]
        banks = []
        for lane in range(L):
            chans = [gi * L + lane for gi in range(G)]
            winit = [int(w_all[o, tt]) if o < O else 0 for o in chans for tt in range(N)]
            rom = memory.Memory(shape=signed(conv.w_fmt.width), depth=G * N, init=winit)
            m.submodules[f"w{lane}"] = rom
            wrd = rom.read_port()
            m.d.comb += wrd.addr.eq(g_ * N + t)
            binit = [init[o] if o < O else 0 for init in self.inits for o in chans]
            binit += [0] * (2 - len(binit))      # depth >= 2: a 1-word memory has a 0-bit address
            brom = memory.Memory(shape=signed(self.acc_width), depth=len(binit), init=binit)
            m.submodules[f"b{lane}"] = brom
            brd = brom.read_port()
            m.d.comb += brd.addr.eq(cid * G + g_)

            prod = x1 * wrd.data
            sprod = prod << aligns[0]
            for a in aligns[1:]:
                sprod = Mux(align_c == a, prod << a, sprod)
            acc = Signal(signed(self.acc_width), name=f"acc{lane}")
            with m.If(v1):
                m.d.sync += acc.eq(Mux(first1, brd.data, acc) + sprod)

            # convert: (acc + half, folded into the bias ROM) >> shift, saturate
            q = _shift(acc, shifts[0])
            for s in shifts[1:]:
                q = Mux(shift_c == s, _shift(acc, s), q)
            y2 = Signal(signed(of.width), name=f"y{lane}")
            m.d.sync += y2.eq(_sat(q, of))

            # LeakyReLU in the out format: y > 0 ? y : convert(alpha * y, frac + alpha_frac)
            if self.act is not None:
                af = self.act.alpha_frac
                half_a = (1 << (af - 1)) if (of.rounding == "rnd" and af > 0) else 0
                alpha = Const(self.act.alpha, max(1, int(self.act.alpha).bit_length()))
                neg = _sat(_shift(y2 * alpha + half_a, af), of)
                z = Mux(y2 > 0, y2, neg)
            else:
                z = y2
            bank = memory.Memory(shape=signed(of.width), depth=bank_depth, init=[])
            m.submodules[f"bank{lane}"] = bank
            bwr = bank.write_port()
            m.d.comb += [bwr.en.eq(v3), bwr.addr.eq(oa3), bwr.data.eq(z)]
            banks.append(bank.read_port())

        # ---- OUT: kp*kp reads per element, running max, output register ---------------------
        oo = Signal(range(max(2, O)))
        og, ob = Signal(range(max(2, G))), Signal(range(max(2, L)))
        py, px = Signal(dim), Signal(dim)
        dy, dx = Signal(range(max(2, kp))), Signal(range(max(2, kp)))
        pyb, pxb = Signal(range(sp * Hom + kp + 2)), Signal(range(sp * Wom + kp + 2))
        Ph_c, Pw_c = per_call("Ph", idx=cid), per_call("Pw", idx=cid)
        va = Signal()
        cy, cx = pyb + dy, pxb + dx
        inb_a = (cy < Ho_c) & (cx < Wo_c)
        raddr = Signal(range(bank_depth))
        m.d.comb += raddr.eq(og * (Hom * Wom) + cy * Wom + cx)
        el_end = (dx == kp - 1) & (dy == kp - 1)
        final_a = el_end & (px == Pw_c - 1) & (py == Ph_c - 1) & (oo == O - 1)
        vb, firstb, lastb, inbb, finalb = Signal(), Signal(), Signal(), Signal(), Signal()
        bankb = Signal.like(ob)
        out_free = ~self.out_valid | self.out_ready
        adv = ~(vb & lastb & ~out_free)
        for rp in banks:
            m.d.comb += [rp.addr.eq(raddr), rp.en.eq(adv)]
        data_b = banks[0].data
        for lane in range(1, L):
            data_b = Mux(bankb == lane, banks[lane].data, data_b)
        val = Mux(inbb, data_b, 0)
        mx = Signal(signed(of.width))
        mx_c = Mux(firstb | (val > mx), val, mx)

        with m.If(adv):
            m.d.sync += [vb.eq(va & (phase == OUT)), firstb.eq((dx == 0) & (dy == 0)), lastb.eq(el_end),
                         inbb.eq(inb_a), finalb.eq(final_a), bankb.eq(ob)]
        with m.If(self.out_valid & self.out_ready):
            m.d.sync += self.out_valid.eq(0)
        with m.If(adv & vb):
            with m.If(lastb):
                m.d.sync += [self.out_data.eq(mx_c), self.out_valid.eq(1), self.out_last.eq(finalb)]
            with m.Else():
                m.d.sync += mx.eq(mx_c)

        # ---- phase machine and counters -----------------------------------------------------
        drain = Signal(range(DRAIN_CYCLES + 1))
        with m.If(phase == LOAD):
            with m.If(take):
                with m.If(first_in):
                    m.d.sync += cid.eq(self.call_id)
                m.d.sync += [lcount.eq(lcount + 1), lx.eq(lx + 1)]
                with m.If(lx == per_call("W") - 1):
                    m.d.sync += [lx.eq(0), ly.eq(ly + 1)]
                    with m.If(ly == per_call("H") - 1):
                        m.d.sync += [ly.eq(0), lc.eq(lc + 1)]
                        with m.If(lc == IC - 1):
                            m.d.sync += [lc.eq(0), lgrp.eq(1)]
                with m.If(lcount == per_call("n_in", range(max(g["n_in"] for g in geo) + 1)) - 1):
                    m.d.sync += [phase.eq(COMPUTE), lcount.eq(0), lx.eq(0), ly.eq(0), lc.eq(0), lgrp.eq(0),
                                 g_.eq(0), oy.eq(0), ox.eq(0), ci.eq(0), ky.eq(0), kx.eq(0), t.eq(0),
                                 yb.eq(-pad), xb.eq(-pad)]
        with m.Elif(phase == COMPUTE):
            m.d.sync += [kx.eq(kx + 1), t.eq(t + 1)]
            with m.If(kx == K - 1):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                with m.If(ky == K - 1):
                    m.d.sync += [ky.eq(0), ci.eq(ci + 1)]
                    with m.If(ci == IC - 1):
                        m.d.sync += [ci.eq(0), t.eq(0), ox.eq(ox + 1), xb.eq(xb + st)]
                        with m.If(ox == Wo_c - 1):
                            m.d.sync += [ox.eq(0), xb.eq(-pad), oy.eq(oy + 1), yb.eq(yb + st)]
                            with m.If(oy == Ho_c - 1):
                                m.d.sync += [oy.eq(0), yb.eq(-pad), g_.eq(g_ + 1)]
            with m.If(last_px & (g_ == G - 1)):
                m.d.sync += [phase.eq(DRAIN), drain.eq(0)]
        with m.Elif(phase == DRAIN):
            m.d.sync += drain.eq(drain + 1)
            with m.If(drain == DRAIN_CYCLES - 1):
                m.d.sync += [phase.eq(OUT), va.eq(1), oo.eq(0), og.eq(0), ob.eq(0), py.eq(0), px.eq(0),
                             dy.eq(0), dx.eq(0), pyb.eq(0), pxb.eq(0)]
        with m.Elif(phase == OUT):
            with m.If(adv & va):
                m.d.sync += dx.eq(dx + 1)
                with m.If(dx == kp - 1):
                    m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                    with m.If(dy == kp - 1):
                        m.d.sync += [dy.eq(0), px.eq(px + 1), pxb.eq(pxb + sp)]
                        with m.If(px == Pw_c - 1):
                            m.d.sync += [px.eq(0), pxb.eq(0), py.eq(py + 1), pyb.eq(pyb + sp)]
                            with m.If(py == Ph_c - 1):
                                m.d.sync += [py.eq(0), pyb.eq(0), oo.eq(oo + 1), ob.eq(ob + 1)]
                                with m.If(ob == L - 1):
                                    m.d.sync += [ob.eq(0), og.eq(og + 1)]
                with m.If(final_a):
                    m.d.sync += va.eq(0)
            with m.If(self.out_valid & self.out_ready & self.out_last):
                m.d.sync += [phase.eq(LOAD), self.out_last.eq(0)]
        return m


__all__ = ["ConvEngine", "conv_engine_params", "conv_engine_cycles", "conv_engine_phases",
           "call_geometry", "unit_layers"]
