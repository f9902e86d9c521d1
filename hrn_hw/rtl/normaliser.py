"""Normaliser: h = phi / ||phi|| with the exact integer 1/sqrt (docs/fixed_point.md, docs/rtl.md).

Bit-exact with `hrn_hw.fixedpoint.ops.normalise`:
E = sum phi_j^2 (exact), inv = isqrt(floor(2^(2K) / E)) (0 when E = 0),
h_j = convert(phi_j * inv, frac K -> h_fmt): add 2^(shift-1) for "rnd" (nothing for "trn"),
arithmetic shift right by shift = K - frac_h, saturate to h_fmt's range.

Parameters `words` W (docs/rtl.md "Multi-word streams": phi and h move W words per beat,
ceil(s / W) beats a frame, positions past s zero) and `root_bits` r (quotient bits and root
bits produced per cycle by the divider and the square root). W = r = 1 is the one-word block.

Interface (clock `clk`, synchronous reset `rst`):
- input stream `in_valid` / `in_ready` / `in_data`: the s entries of phi (signed, phi_width),
  in bucket order (the hash unit's output stream); `in_ready` is high in phase LOAD. Positions
  past s of the last beat are ignored (forced to zero).
- output stream `out_valid` / `out_ready` / `out_data` / `out_last`: h_0 .. h_{s-1} in h_fmt,
  with back-pressure; positions past s of the last beat are zero.
- `energy` and `inv`: E and inv of the current frame, valid while the frame's h is streamed
  out (for tests and for the residue's stop rule).

Phases: LOAD (ceil(s / W) beats, stored as rows of W words in a local memory; the W squares of
a beat are summed by an adder tree into E through a two-stage multiply-accumulate), FLUSH (the
MAC drains), DIV (restoring division 2^(2K) / E, r quotient bits per cycle), SQRT (digit-by-digit
integer square root of the quotient, r root bits (2r radicand bits) per cycle), OUT (read a row
of phi, multiply by inv, round and saturate: a three-stage pipeline with a common stall).
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.rtl.fixed import convert_expr
from hrn_hw.rtl.rows import beats, frame_row_words, pack_words, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

LOAD, FLUSH, DIV, SQRT, OUT = range(5)
MAC_STAGES = 2        # phi register, square register; E is updated one cycle later
OUT_STAGES = 4        # memory read, partial products, product register, output register
SPLIT = 25            # inv is multiplied in two parts, its low SPLIT bits and the rest (timing closure)


def div_cycles(norm_k: int, root_bits: int = 1) -> int:
    """Cycles of the restoring division 2^(2K) / E: ceil((2K + 1) / r)."""
    return -(-(2 * norm_k + 1) // root_bits)


def sqrt_cycles(norm_k: int, root_bits: int = 1) -> int:
    """Cycles of the square root of the (2K + 1)-bit quotient (K + 1 root bits): ceil((K + 1) / r)."""
    return -(-(norm_k + 1) // root_bits)


def normaliser_phases(s: int, norm_k: int, words: int = 1, root_bits: int = 1) -> dict:
    """Cycles per phase of the normaliser for s entries, K = norm_k, W words per beat and r
    root bits per cycle."""
    return {
        "load": beats(s, words),                # phi in, stored, squared
        "flush": MAC_STAGES + 1,                # square and accumulate drain; the FSM sees it empty
        "div": div_cycles(norm_k, root_bits),   # restoring division 2^(2K) / E, r quotient bits a cycle
        "sqrt": sqrt_cycles(norm_k, root_bits), # isqrt of the (2K+1)-bit quotient, r root bits a cycle
        "out_pipeline": OUT_STAGES,             # memory read, partial products, product, round/saturate registers
        "out": beats(s, words),                 # h, one beat (W words) per cycle
    }


def normaliser_cycles(s: int, norm_k: int, words: int = 1, root_bits: int = 1) -> int:
    """Normaliser latency: 2 ceil(s / W) + ceil((2K + 1) / r) + ceil((K + 1) / r) + 7
    (2 s + 3 K + 9 at W = r = 1)."""
    return sum(normaliser_phases(s, norm_k, words, root_bits).values())


def _div_steps(mod: Module, rem, q, e, one, one_at: int, steps: int):
    """`steps` restoring-division steps in one cycle (MSB first): shift in the numerator bit
    (`one` at step `one_at`, else 0), subtract E when it fits. Returns (rem, q) after."""
    ew = len(e)
    for i in range(steps):
        t = Signal(ew + 1, name=f"div_t{i}")
        mod.d.comb += t.eq(Cat(one if i == one_at else C(0, 1), rem[:ew]))   # (rem << 1) | bit
        ge = t >= e
        rem, q = Mux(ge, t - e, t), Cat(ge, q)
    return rem, q


def _sqrt_steps(mod: Module, srem, root, x, rw: int, steps: int):
    """`steps` digit-by-digit square-root steps in one cycle, two radicand bits each, taken from
    the top of x downwards. Returns (srem, root) after."""
    xw = len(x)
    for i in range(steps):
        r2 = Signal(rw + 2, name=f"sqrt_r{i}")
        mod.d.comb += r2.eq(Cat(x[xw - 2 * i - 2:xw - 2 * i], srem[:rw]))   # (srem << 2) | 2 bits
        trial = Cat(C(1, 2), root)                                           # (root << 2) | 1
        ge = r2 >= trial
        # a signal per step: the next trial reads the root (an expression would nest each
        # step's comparison in all the later ones); partial roots never exceed the root's width
        step_root = Signal(len(root), name=f"sqrt_root{i}")
        mod.d.comb += step_root.eq(Cat(ge, root))
        srem, root = Mux(ge, r2 - trial, r2), step_root
    return srem, root


class Normaliser(wiring.Component):
    """Parameters: s, norm_k (K of the manifest), h_fmt (signed), phi_width (32 by contract),
    e_width (bits of the largest energy, <= 63 by the export's check; 64 default), words (W per
    beat, default 1), root_bits (r quotient / root bits per cycle, default 1)."""

    def __init__(self, s: int, norm_k: int, h_fmt: Fmt, phi_width: int = 32, e_width: int = 64,
                 words: int = 1, root_bits: int = 1):
        if not h_fmt.signed:
            raise ValueError("normaliser: h format must be signed")
        if norm_k <= h_fmt.frac:
            raise ValueError("normaliser: norm_k must exceed the h format's fraction bits")
        if int(words) < 1 or int(root_bits) < 1:
            raise ValueError("normaliser: words and root_bits must be >= 1")
        if 2 * (phi_width - 1) + max(1, (s - 1).bit_length()) < e_width:
            e_width = 2 * (phi_width - 1) + max(1, (s - 1).bit_length())
        self.s, self.k, self.h_fmt = s, norm_k, h_fmt
        self.phi_width, self.e_width = phi_width, e_width
        self.words, self.root_bits, self.rows = int(words), int(root_bits), beats(s, int(words))
        super().__init__({
            **stream_in("in", row_shape(phi_width, self.words)),
            **stream_out("out", row_shape(h_fmt.width, self.words), last=True),
            "energy": Out(e_width),
            "inv": Out(norm_k + 1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        """The phi memory, then the phases: LOAD, FLUSH / DIV / SQRT (inv), OUT."""
        m = Module()
        bw = max(1, self.rows.bit_length())

        m.submodules.mem = mem = memory.Memory(shape=row_shape(self.phi_width, self.words), depth=self.rows, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        phase = Signal(range(5))
        wa = Signal(bw)                # load row / count
        e = Signal(self.e_width)

        va, vb = self._load(m, phase, wa, e, wr)
        inv = self._inverse_root(m, phase, e, va, vb)
        self._out(m, phase, wa, e, inv, rd, bw)
        return m

    def _load(self, m: Module, phase, wa, e, wr):
        """LOAD: store phi, square, accumulate E (an adder tree over the beat). Returns the
        square-accumulate pipeline's valid bits (va, vb)."""
        s, W, rows, pw = self.s, self.words, self.rows, self.phi_width
        take = self.in_valid & self.in_ready
        phi_in = pack_words(m, frame_row_words(self.in_data, pw, W, s, wa), pw, name="phi_in")
        xa = Signal(row_shape(pw, W))
        va = Signal()
        sq = [Signal(2 * pw, name=f"sq{i}") for i in range(W)]
        vb = Signal()
        m.d.comb += [self.in_ready.eq(phase == LOAD),
                     wr.addr.eq(wa), wr.data.eq(phi_in), wr.en.eq(take)]
        m.d.sync += [va.eq(take), xa.eq(phi_in), vb.eq(va)]
        m.d.sync += [q.eq(x * x) for q, x in zip(sq, row_words(xa, pw, W))]
        with m.If(vb):
            m.d.sync += e.eq(e + tree_sum(sq))
        with m.If(phase == LOAD):
            with m.If(take):
                m.d.sync += wa.eq(wa + 1)
                with m.If(wa == rows - 1):
                    m.d.sync += phase.eq(FLUSH)
        return va, vb

    def _inverse_root(self, m: Module, phase, e, va, vb):
        """FLUSH, DIV and SQRT: inv = isqrt(floor(2^(2K) / E)), r quotient / root bits a cycle.
        Returns inv (0 when E = 0)."""
        k, r = self.k, self.root_bits
        qw = 2 * k + 1                 # quotient bits: floor(2^(2K) / E) <= 2^(2K)
        n_div, n_sqrt = div_cycles(k, r), sqrt_cycles(k, r)
        xw = 2 * r * n_sqrt            # radicand zero-padded to 2r bits per cycle (2K + 2 at r = 1)
        rw = k + 4                     # square-root remainder (< 2 root + 1 <= 2^(K+2)) + slack
        # ---- DIV: q = floor(2^(2K) / E), restoring, MSB first, r bits a cycle ----------------
        # The numerator 2^(2K), zero-padded to r * n_div bits, has its one 1 bit at step
        # r * n_div - qw of the first cycle.
        cnt = Signal(range(max(n_div, n_sqrt) + 1))
        rem = Signal(self.e_width + 1)
        q = Signal(qw)
        rem_next, q_next = _div_steps(m, rem, q, e, cnt == n_div - 1, r * n_div - qw, r)
        # ---- SQRT: inv = isqrt(q), 2r radicand bits per cycle, MSB first ---------------------
        x = Signal(xw)
        root = Signal(k + 1)
        srem = Signal(rw)
        srem_next, root_next = _sqrt_steps(m, srem, root, x, rw, r)
        inv = Signal(k + 1)
        m.d.comb += [self.inv.eq(inv), self.energy.eq(e)]

        with m.If(phase == FLUSH):
            with m.If(~va & ~vb):
                m.d.sync += [phase.eq(DIV), cnt.eq(n_div - 1), rem.eq(0), q.eq(0)]
        with m.If(phase == DIV):
            m.d.sync += [rem.eq(rem_next), q.eq(q_next), cnt.eq(cnt - 1)]
            with m.If(cnt == 0):
                m.d.sync += [phase.eq(SQRT), x.eq(q_next[:qw]), root.eq(0), srem.eq(0),
                             cnt.eq(n_sqrt - 1)]
        with m.If(phase == SQRT):
            m.d.sync += [x.eq(x << (2 * r)), cnt.eq(cnt - 1), srem.eq(srem_next), root.eq(root_next)]
            with m.If(cnt == 0):
                m.d.sync += [phase.eq(OUT), inv.eq(Mux(e == 0, 0, root_next))]
        return inv

    def _out(self, m: Module, phase, wa, e, inv, rd, bw: int):
        """OUT: h_j = sat(round(phi_j * inv >> shift)), a row at a time (memory read, the two
        partial products phi_j * inv[:SPLIT] and phi_j * inv[SPLIT:], their sum, convert: a
        four-stage pipeline with a common stall); back to LOAD after the last."""
        k, hf, W, rows, pw = self.k, self.h_fmt, self.words, self.rows, self.phi_width
        ra = Signal(bw)
        v1, vp, v2, ov = Signal(), Signal(), Signal(), Signal()
        lo_w = min(SPLIT, k + 1)
        inv_lo = Cat(inv[:lo_w], C(0, 1)).as_signed()
        inv_hi = Cat(inv[lo_w:], C(0, 1)).as_signed()
        parts = [(Signal(signed(pw + lo_w + 2), name=f"plo{i}"), Signal(signed(pw + k + 2 - lo_w), name=f"phi{i}"))
                 for i in range(W)]
        oc = Signal(bw)
        prods = [Signal(signed(pw + k + 2), name=f"prod{i}") for i in range(W)]
        houts = [Signal(signed(hf.width), name=f"hout{i}") for i in range(W)]
        adv = Signal()
        m.d.comb += [
            adv.eq(~ov | self.out_ready),
            self.out_valid.eq(ov),
            self.out_data.eq(Cat(*houts)),
            self.out_last.eq(ov & (oc == rows - 1)),
            self.busy.eq(phase != LOAD),
        ]
        with m.If(phase == OUT):
            m.d.comb += [rd.addr.eq(ra), rd.en.eq(adv)]
            with m.If(adv):
                m.d.sync += [v1.eq(ra < rows), vp.eq(v1), v2.eq(vp), ov.eq(v2)]
                for (lo, hi), phi in zip(parts, row_words(rd.data, pw, W)):
                    m.d.sync += [lo.eq(phi * inv_lo), hi.eq(phi * inv_hi)]
                m.d.sync += [p.eq((hi << lo_w) + lo) for p, (lo, hi) in zip(prods, parts)]
                m.d.sync += [h.eq(convert_expr(p, k, hf)) for h, p in zip(houts, prods)]
                with m.If(ra < rows):
                    m.d.sync += ra.eq(ra + 1)
            with m.If(ov & self.out_ready):
                m.d.sync += oc.eq(oc + 1)
                with m.If(oc == rows - 1):
                    m.d.sync += [phase.eq(LOAD), wa.eq(0), e.eq(0), ra.eq(0), oc.eq(0),
                                 v1.eq(0), vp.eq(0), v2.eq(0), ov.eq(0)]
