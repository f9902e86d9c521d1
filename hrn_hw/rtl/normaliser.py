"""Normaliser: h = phi / ||phi|| with the exact integer 1/sqrt (docs/fixed_point.md, docs/rtl.md).

Bit-exact with `hrn_hw.fixedpoint.ops.normalise`:
E = sum phi_j^2 (exact), inv = isqrt(floor(2^(2K) / E)) (0 when E = 0),
h_j = convert(phi_j * inv, frac K -> h_fmt): add 2^(shift-1) for "rnd" (nothing for "trn"),
arithmetic shift right by shift = K - frac_h, saturate to h_fmt's range.

Interface (clock `clk`, synchronous reset `rst`):
- input stream `in_valid` / `in_ready` / `in_data`: the s entries of phi (signed, phi_width),
  in bucket order (the hash unit's output stream); `in_ready` is high in phase LOAD.
- output stream `out_valid` / `out_ready` / `out_data` / `out_last`: h_0 .. h_{s-1} in h_fmt,
  with back-pressure.
- `energy` and `inv`: E and inv of the current frame, valid while the frame's h is streamed
  out (for tests and for the residue's stop rule).

Phases: LOAD (s inputs, stored in a local s-entry memory; squares summed through a two-stage
multiply-accumulate), FLUSH (the MAC drains), DIV (restoring division 2^(2K) / E, one quotient
bit per cycle, 2K + 1 cycles), SQRT (bit-by-bit integer square root of the quotient, two
radicand bits per cycle, K + 1 cycles), OUT (read phi, multiply by inv, round and saturate:
a three-stage pipeline with a common stall).
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.fixedpoint.fmt import Fmt

LOAD, FLUSH, DIV, SQRT, OUT = range(5)
MAC_STAGES = 2        # phi register, square register; E is updated one cycle later
OUT_STAGES = 3        # memory read, product register, output register


def normaliser_phases(s: int, norm_k: int) -> dict:
    """Cycles per phase of the normaliser for s entries and K = norm_k."""
    return {
        "load": s,                  # phi in, stored, squared
        "flush": MAC_STAGES + 1,    # square and accumulate drain; the FSM sees it empty
        "div": 2 * norm_k + 1,      # restoring division 2^(2K) / E, one quotient bit per cycle
        "sqrt": norm_k + 1,         # isqrt of the (2K+1)-bit quotient, two bits per cycle
        "out_pipeline": OUT_STAGES, # memory read, product, round/saturate registers
        "out": s,                   # h_0 .. h_{s-1}, one per cycle
    }


def normaliser_cycles(s: int, norm_k: int) -> int:
    """Normaliser latency: 2 s + 3 K + 8."""
    return sum(normaliser_phases(s, norm_k).values())


class Normaliser(wiring.Component):
    """Parameters: s, norm_k (K of the manifest), h_fmt (signed), phi_width (32 by contract),
    e_width (bits of the largest energy, <= 63 by the export's check; 64 default)."""

    def __init__(self, s: int, norm_k: int, h_fmt: Fmt, phi_width: int = 32, e_width: int = 64):
        if not h_fmt.signed:
            raise ValueError("normaliser: h format must be signed")
        if norm_k <= h_fmt.frac:
            raise ValueError("normaliser: norm_k must exceed the h format's fraction bits")
        if 2 * (phi_width - 1) + max(1, (s - 1).bit_length()) < e_width:
            e_width = 2 * (phi_width - 1) + max(1, (s - 1).bit_length())
        self.s, self.k, self.h_fmt = s, norm_k, h_fmt
        self.phi_width, self.e_width = phi_width, e_width
        super().__init__({
            "in_valid": In(1),
            "in_ready": Out(1),
            "in_data": In(signed(phi_width)),
            "out_valid": Out(1),
            "out_ready": In(1),
            "out_data": Out(signed(h_fmt.width)),
            "out_last": Out(1),
            "energy": Out(e_width),
            "inv": Out(norm_k + 1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        s, k, hf = self.s, self.k, self.h_fmt
        aw = max(1, (s - 1).bit_length())
        bw = max(1, s.bit_length())
        qw = 2 * k + 1                 # quotient bits: floor(2^(2K) / E) <= 2^(2K)
        xw = 2 * k + 2                 # radicand padded to an even width
        rw = k + 4                     # square-root remainder (< 2 root + 1 <= 2^(K+2)) + slack

        m.submodules.mem = mem = memory.Memory(shape=signed(self.phi_width), depth=s, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        phase = Signal(range(5))
        wa = Signal(bw)                # load address / count
        e = Signal(self.e_width)
        xa = Signal(signed(self.phi_width))
        va = Signal()
        sq = Signal(2 * self.phi_width)
        vb = Signal()

        # ---- LOAD: store phi, square, accumulate --------------------------------------------
        take = self.in_valid & self.in_ready
        m.d.comb += [self.in_ready.eq(phase == LOAD),
                     wr.addr.eq(wa), wr.data.eq(self.in_data), wr.en.eq(take)]
        m.d.sync += [va.eq(take), xa.eq(self.in_data), vb.eq(va), sq.eq(xa * xa)]
        with m.If(vb):
            m.d.sync += e.eq(e + sq)
        with m.If(phase == LOAD):
            with m.If(take):
                m.d.sync += wa.eq(wa + 1)
                with m.If(wa == s - 1):
                    m.d.sync += phase.eq(FLUSH)

        # ---- DIV: q = floor(2^(2K) / E), restoring, MSB first --------------------------------
        cnt = Signal(range(qw + 1))
        rem = Signal(self.e_width + 1)
        q = Signal(qw)
        t = Signal(self.e_width + 1)
        ge = Signal()
        q_next = Signal(qw)
        m.d.comb += [
            t.eq(Cat(cnt == qw - 1, rem)),          # (rem << 1) | numerator bit
            ge.eq(t >= e),
            q_next.eq(Cat(ge, q)),
        ]
        # ---- SQRT: inv = isqrt(q), two radicand bits per step, MSB first --------------------
        x = Signal(xw)
        root = Signal(k + 1)
        srem = Signal(rw)
        r2 = Signal(rw + 2)
        trial = Signal(rw + 2)
        sge = Signal()
        m.d.comb += [
            r2.eq((srem << 2) | x[xw - 2:]),
            trial.eq((root << 2) | 1),
            sge.eq(r2 >= trial),
        ]
        inv = Signal(k + 1)
        m.d.comb += [self.inv.eq(inv), self.energy.eq(e)]

        with m.If(phase == FLUSH):
            with m.If(~va & ~vb):
                m.d.sync += [phase.eq(DIV), cnt.eq(qw - 1), rem.eq(0), q.eq(0)]
        with m.If(phase == DIV):
            m.d.sync += [rem.eq(Mux(ge, t - e, t)), q.eq(q_next), cnt.eq(cnt - 1)]
            with m.If(cnt == 0):
                m.d.sync += [phase.eq(SQRT), x.eq(q_next), root.eq(0), srem.eq(0), cnt.eq(k)]
        with m.If(phase == SQRT):
            m.d.sync += [x.eq(x << 2), cnt.eq(cnt - 1),
                         srem.eq(Mux(sge, r2 - trial, r2)), root.eq(Cat(sge, root))]
            with m.If(cnt == 0):
                m.d.sync += [phase.eq(OUT), inv.eq(Mux(e == 0, 0, Cat(sge, root)))]

        # ---- OUT: h_j = sat(round(phi_j * inv >> shift)) -------------------------------------
        shift = k - hf.frac
        ra = Signal(bw)
        v1, v2, ov = Signal(), Signal(), Signal()
        oc = Signal(bw)
        prod = Signal(signed(self.phi_width + k + 2))
        adv = Signal()
        half = (1 << (shift - 1)) if hf.rounding == "rnd" else 0
        rounded = Signal(signed(self.phi_width + k + 3))
        m.d.comb += [rounded.eq((prod + half) >> shift), adv.eq(~ov | self.out_ready)]
        hout = Signal(signed(hf.width))
        m.d.comb += [
            self.out_valid.eq(ov),
            self.out_data.eq(hout),
            self.out_last.eq(ov & (oc == s - 1)),
            self.busy.eq(phase != LOAD),
        ]
        with m.If(phase == OUT):
            m.d.comb += [rd.addr.eq(ra), rd.en.eq(adv)]
            with m.If(adv):
                m.d.sync += [
                    v1.eq(ra < s),
                    v2.eq(v1),
                    ov.eq(v2),
                    prod.eq(rd.data * Cat(inv, C(0, 1)).as_signed()),
                    hout.eq(Mux(rounded > hf.qmax, hf.qmax, Mux(rounded < hf.qmin, hf.qmin, rounded))),
                ]
                with m.If(ra < s):
                    m.d.sync += ra.eq(ra + 1)
            with m.If(ov & self.out_ready):
                m.d.sync += oc.eq(oc + 1)
                with m.If(oc == s - 1):
                    m.d.sync += [phase.eq(LOAD), wa.eq(0), e.eq(0), ra.eq(0), oc.eq(0),
                                 v1.eq(0), v2.eq(0), ov.eq(0)]
        return m

