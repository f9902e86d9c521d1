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
a beat are summed by an adder tree into E through a three-stage multiply-accumulate: phi
register, the partial products of phi's multiplier-sized pieces, the square), FLUSH (the MAC
drains), DIV (restoring division 2^(2K) / E, r quotient bits per cycle: at r <= 2 one radix-2^r
digit, its 2^r - 1 multiples of E compared in parallel), SQRT (digit-by-digit integer square
root of the quotient, r root bits (2r radicand bits) per cycle, the trial values of a radix-2^r
digit held in registers), OUT (read a row of phi, register it, multiply by inv as registered
partial products of multiplier-sized pieces, sum them in two registered stages, round and
saturate: a six-stage pipeline with a common stall).
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.fixedpoint.ops import energy_width
from hrn_hw.rtl.arith import CHUNK, chunks, const_mul
from hrn_hw.rtl.fixed import convert_parallel
from hrn_hw.rtl.rows import beats, frame_row_words, pack_words, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

LOAD, FLUSH, DIV, SQRT, OUT = range(5)
MAC_STAGES = 3        # phi register, partial-product registers, square register; E is updated one cycle later
OUT_STAGES = 6        # memory read, read-data register, partial products, two adder-tree registers, output register
SPLIT = CHUNK         # operands are cut into multiplier-sized pieces (`hrn_hw.rtl.arith.chunks`, timing closure)


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
        "out_pipeline": OUT_STAGES,             # memory read, read data, partial products, piece sums, product, convert
        "out": beats(s, words),                 # h, one beat (W words) per cycle
    }


def normaliser_cycles(s: int, norm_k: int, words: int = 1, root_bits: int = 1) -> int:
    """Normaliser latency: 2 ceil(s / W) + ceil((2K + 1) / r) + ceil((K + 1) / r) + 10
    (2 s + 3 K + 12 at W = r = 1)."""
    return sum(normaliser_phases(s, norm_k, words, root_bits).values())


def _add_at(lo, hi):
    """(shift_a, a) + (shift_b, b) with shift_a <= shift_b, exact: a's bits below shift_b pass
    through and the adder starts at shift_b (no carry chain over constant zeros). Returns
    (shift_a, sum)."""
    (sa, a), (sb, b) = lo, hi
    d = sb - sa
    if d == 0:
        return sa, a + b
    top = (a >> d) + b
    out = Cat(a[:d], top)
    return sa, (out.as_signed() if top.shape().signed else out)


def _shift_sum(terms):
    """sum(t << shift) of [(shift, t)] in increasing shift order, a chain of `_add_at`. Returns
    the value at shift terms[0][0]."""
    acc = terms[0]
    for t in terms[1:]:
        acc = _add_at(acc, t)
    return acc[1]


def digit_sizes(root_bits: int) -> list[int]:
    """The radix-2^g digits (g = 2 or 1, MSB first) that make up a cycle's r = root_bits bits:
    one digit at r <= 2 (all its candidates compared in parallel), a chain of them above."""
    r = int(root_bits)
    return [r] if r <= 2 else [2] * (r // 2) + [1] * (r % 2)


def _div_digit(mod: Module, rem, q, mults, digit_in, g: int, name: str):
    """One radix-2^g restoring-division digit (the same quotient and remainder as g binary
    steps): t = (rem << g) | digit_in, the largest k with k E <= t, the 2^g - 1 multiples k E
    (`mults`) compared in parallel (one subtraction each). Returns (rem, q) after."""
    ew = len(rem)
    t = Signal(ew + g, name=f"{name}_t")
    mod.d.comb += t.eq(Cat(digit_in, rem))
    nxt, digit = t, C(0, g)
    for k, mk in enumerate(mults, start=1):
        dk = Signal(signed(ew + g + 1), name=f"{name}_d{k}")
        mod.d.comb += dk.eq(t - mk)
        ge = ~dk[-1]
        nxt, digit = Mux(ge, dk, nxt), Mux(ge, C(k, g), digit)
    rem_next = Signal(ew, name=f"{name}_rem")        # < E
    mod.d.comb += rem_next.eq(nxt)
    return rem_next, Cat(digit, q)


def _trial_step(d: int, dd: int, g: int) -> int:
    """T_d' - (T_d << g) when the root takes the radix-2^g digit dd (T_d = d 2^(g+1) root + d^2)."""
    return d * dd * (1 << (g + 1)) + d * d * (1 - (1 << g))


def _sqrt_digit(mod: Module, srem, root, trials, bits, g: int, name: str):
    """One radix-2^g digit-by-digit square-root digit (g root bits from 2g radicand bits `bits`;
    the same root and remainder as g binary steps): u = (srem << 2g) | bits, the largest digit
    d with T_d <= u, T_d = d 2^(g+1) root + d^2 (`trials`), compared in parallel. Returns
    (srem, root, the next trials): T_d' = (T_d << g) + d d' 2^(g+1) + d^2 (1 - 2^g) for the
    chosen digit d' (candidates added in parallel with the comparisons, then a mux)."""
    tw = len(srem)
    u = Signal(tw, name=f"{name}_u")
    mod.d.comb += u.eq(Cat(bits, srem))
    nxt, digit = u, C(0, g)
    nxt_trials = [(t << g) + _trial_step(d, 0, g) for d, t in enumerate(trials, start=1)]
    for k, tk in enumerate(trials, start=1):
        dk = Signal(signed(tw + 1), name=f"{name}_d{k}")
        mod.d.comb += dk.eq(u - tk)
        ge = ~dk[-1]
        nxt, digit = Mux(ge, dk, nxt), Mux(ge, C(k, g), digit)
        nxt_trials = [Mux(ge, (t << g) + _trial_step(d, k, g), cur)
                      for (d, t), cur in zip(enumerate(trials, start=1), nxt_trials)]
    srem_next = Signal(tw, name=f"{name}_rem")
    mod.d.comb += srem_next.eq(nxt)
    root_next = Signal(len(root), name=f"{name}_root")   # partial roots never exceed its width
    mod.d.comb += root_next.eq(Cat(digit, root))
    return srem_next, root_next, nxt_trials


def _root_trials(root, g: int, tw: int) -> list:
    """T_d = d 2^(g+1) root + d^2, d = 1 .. 2^g - 1, from the root (shift-and-add)."""
    return [(const_mul(root, d << (g + 1)) + d * d)[:tw] for d in range(1, 1 << g)]


class Normaliser(wiring.Component):
    """Parameters: s, norm_k (K of the manifest), h_fmt (signed), phi_width (32 by contract),
    e_width (bits of the energy accumulator; default `ops.energy_width(norm_k, h_fmt)`: every
    energy the export chose K for, at least 64), words (W per beat, default 1), root_bits (r
    quotient / root bits per cycle, default 1)."""

    def __init__(self, s: int, norm_k: int, h_fmt: Fmt, phi_width: int = 32, e_width: int | None = None,
                 words: int = 1, root_bits: int = 1):
        if e_width is None:
            e_width = energy_width(norm_k, h_fmt)
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

        valids = self._load(m, phase, wa, e, wr)
        inv = self._inverse_root(m, phase, e, valids)
        self._out(m, phase, wa, e, inv, rd, bw)
        return m

    def _load(self, m: Module, phase, wa, e, wr):
        """LOAD: store phi, square, accumulate E (an adder tree over the beat). Each square is
        cut into multiplier-sized partial products (registered), then summed (registered),
        then accumulated. Returns the pipeline's valid bits (va, vb, vc)."""
        s, W, rows, pw = self.s, self.words, self.rows, self.phi_width
        take = self.in_valid & self.in_ready
        phi_in = pack_words(m, frame_row_words(self.in_data, pw, W, s, wa), pw, name="phi_in")
        xa = Signal(row_shape(pw, W))
        va, vb, vc = Signal(), Signal(), Signal()
        sq = [Signal(2 * pw, name=f"sq{i}") for i in range(W)]
        m.d.comb += [self.in_ready.eq(phase == LOAD),
                     wr.addr.eq(wa), wr.data.eq(phi_in), wr.en.eq(take)]
        m.d.sync += [va.eq(take), xa.eq(phi_in), vb.eq(va), vc.eq(vb)]
        for i, x in enumerate(row_words(xa, pw, W)):
            pieces = chunks(x, pw, True)
            # x^2 = sum_a p_a^2 << 2 s_a + sum_{a<b} 2 p_a p_b << (s_a + s_b): one MULT18 each
            diag, cross = [], []
            for a, (sa, pa) in enumerate(pieces):
                for b, (sb, pb) in enumerate(pieces[a:], start=a):
                    expr = pa * pb
                    pp = Signal(expr.shape(), name=f"sqp{i}_{a}{b}")
                    m.d.sync += pp.eq(expr)
                    (diag if a == b else cross).append((sa + sb + (a != b), pp))
            # the squares of the low (unsigned, CHUNK-bit) pieces fill 2 CHUNK bits each: the
            # diagonal is a concatenation, the cross terms are added to it
            low = [Cat(pp, C(0, 2 * CHUNK - len(pp))) for _, pp in diag[:-1]]
            terms = [(0, Cat(*low, diag[-1][1]).as_signed() if low else diag[-1][1])] + sorted(cross, key=lambda t: t[0])
            m.d.sync += sq[i].eq(_shift_sum(terms))
        with m.If(vc):
            m.d.sync += e.eq(e + tree_sum(sq))
        with m.If(phase == LOAD):
            with m.If(take):
                m.d.sync += wa.eq(wa + 1)
                with m.If(wa == rows - 1):
                    m.d.sync += phase.eq(FLUSH)
        return va, vb, vc

    def _inverse_root(self, m: Module, phase, e, valids):
        """FLUSH, DIV and SQRT: inv = isqrt(floor(2^(2K) / E)), r quotient / root bits a cycle
        (`digit_sizes`: one radix-2^r digit at r <= 2, its candidates compared in parallel; a
        chain of radix-4 / radix-2 digits above). Returns inv (0 when E = 0)."""
        k, r, ew = self.k, self.root_bits, self.e_width
        qw = 2 * k + 1                 # quotient bits: floor(2^(2K) / E) <= 2^(2K)
        n_div, n_sqrt = div_cycles(k, r), sqrt_cycles(k, r)
        xw = 2 * r * n_sqrt            # radicand zero-padded to 2r bits per cycle (2K + 2 at r = 1)
        tw = k + 2 * r + 4             # square-root remainder and trials (< 2^(K + 2r + 3)) + slack
        # ---- DIV: q = floor(2^(2K) / E), restoring, MSB first, r bits a cycle ----------------
        # The numerator 2^(2K), zero-padded to r * n_div bits, has its one 1 bit at step
        # r * n_div - qw (MSB first) of the first cycle. The multiples k E (k < 2^r) that are
        # no power of two are registered (E is final a cycle before DIV: the FLUSH exit).
        cnt = Signal(range(max(n_div, n_sqrt) + 1))
        rem = Signal(ew)
        # the quotient is shifted in at the bottom of x, the square root's radicand register
        # (the zero-padded quotient, 2r bits a cycle taken from its top): no mux between them
        x = Signal(max(xw, r * n_div))
        sizes = digit_sizes(r)
        mults = {1: [e]}
        if 2 in sizes:
            e3 = Signal(ew + 2, name="e_x3")
            m.d.sync += e3.eq(const_mul(e, 3))
            mults[2] = [e, e << 1, e3]
        num = Signal(r, name="div_num")          # the cycle's r numerator bits (a register)
        rem_next, q_next, top = rem, x, r
        for j, g in enumerate(sizes):
            top -= g
            rem_next, q_next = _div_digit(m, rem_next, q_next, mults[g], num[top:top + g], g, f"div{j}")
        # ---- SQRT: inv = isqrt(q), 2r radicand bits per cycle, MSB first ---------------------
        root = Signal(k + 1)
        srem = Signal(tw)
        # at r <= 2 the trials of the cycle's one digit are registers (updated from candidates);
        # above, each digit's trials come from the partial root (a chain)
        trials = [Signal(tw, name=f"sqrt_t{d}") for d in range(1, 1 << r)] if r <= 2 else []
        srem_next, root_next, top = srem, root, xw
        for j, g in enumerate(sizes):
            top -= 2 * g
            tr = trials if r <= 2 else _root_trials(root_next, g, tw)
            srem_next, root_next, trials_next = _sqrt_digit(m, srem_next, root_next, tr, x[:xw][top:top + 2 * g], g,
                                                            f"sqrt{j}")
        inv = Signal(k + 1)
        m.d.comb += [self.inv.eq(inv), self.energy.eq(e)]

        with m.If(phase == FLUSH):
            with m.If(~Cat(*valids).any()):
                m.d.sync += [phase.eq(DIV), cnt.eq(n_div - 1), rem.eq(0), x.eq(0),
                             num.eq(1 << (r - 1 - (r * n_div - qw)))]
        with m.If(phase == DIV):
            m.d.sync += [rem.eq(rem_next), x.eq(q_next), cnt.eq(cnt - 1), num.eq(0)]
            with m.If(cnt == 0):
                # x holds the quotient (< 2^(2K+1), its bits above zero): the radicand
                m.d.sync += [phase.eq(SQRT), root.eq(0), srem.eq(0), cnt.eq(n_sqrt - 1)]
                m.d.sync += [t.eq(d * d) for d, t in enumerate(trials, start=1)]
        with m.If(phase == SQRT):
            m.d.sync += [x.eq(x << (2 * r)), cnt.eq(cnt - 1), srem.eq(srem_next), root.eq(root_next)]
            m.d.sync += [t.eq(tn) for t, tn in zip(trials, trials_next)]
            with m.If(cnt == 0):
                m.d.sync += [phase.eq(OUT), inv.eq(Mux(e == 0, 0, root_next))]
        return inv

    def _out(self, m: Module, phase, wa, e, inv, rd, bw: int):
        """OUT: h_j = sat(round(phi_j * inv >> shift)), a row at a time: memory read, read-data
        register, the partial products of phi's and inv's multiplier-sized pieces (one MULT18
        each, registered), their sum per piece of phi (registered), the product (registered),
        convert: a six-stage pipeline with a common stall; back to LOAD after the last."""
        k, hf, W, rows, pw = self.k, self.h_fmt, self.words, self.rows, self.phi_width
        ra = Signal(bw)
        valid = [Signal(name=f"ov{i}") for i in range(OUT_STAGES)]     # valid[-1]: the output register
        ov = valid[-1]
        phi_r = Signal(row_shape(pw, W))
        inv_pieces = chunks(inv, k + 1, False)
        oc = Signal(bw)
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
                m.d.sync += [valid[0].eq(ra < rows)] + [b.eq(a) for a, b in zip(valid, valid[1:])]
                m.d.sync += phi_r.eq(rd.data)
                for i, phi in enumerate(row_words(phi_r, pw, W)):
                    rows_sum = []
                    for a, (sa, pa) in enumerate(chunks(phi, pw, True)):
                        terms = []
                        for b, (sb, ib) in enumerate(inv_pieces):
                            expr = pa * ib
                            pp = Signal(expr.shape(), name=f"pp{i}_{a}{b}")
                            m.d.sync += pp.eq(expr)
                            terms.append((sb, pp))
                        if not pa.shape().signed and len(terms) > 1:
                            # unsigned pieces: the products at even steps do not overlap (each
                            # < 2^(2 CHUNK)): a concatenation, the odd ones added to it
                            even = [pp for j, (_, pp) in enumerate(terms) if j % 2 == 0]
                            cat = Cat(*[Cat(pp, C(0, 2 * CHUNK - len(pp))) for pp in even[:-1]], even[-1])
                            terms = [(0, cat)] + [t for j, t in enumerate(terms) if j % 2]
                        expr = _shift_sum(terms)
                        row = Signal(expr.shape(), name=f"prow{i}_{a}")
                        m.d.sync += row.eq(expr)
                        rows_sum.append((sa, row))
                    expr = _shift_sum(rows_sum)
                    prod = Signal(expr.shape(), name=f"prod{i}")
                    m.d.sync += [prod.eq(expr), houts[i].eq(convert_parallel(prod, k, hf))]
                with m.If(ra < rows):
                    m.d.sync += ra.eq(ra + 1)
            with m.If(ov & self.out_ready):
                m.d.sync += oc.eq(oc + 1)
                with m.If(oc == rows - 1):
                    m.d.sync += [phase.eq(LOAD), wa.eq(0), e.eq(0), ra.eq(0), oc.eq(0)]
                    m.d.sync += [v.eq(0) for v in valid]
