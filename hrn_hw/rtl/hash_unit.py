"""Hash unit: phi_k(y) of one map, streamed W elements per beat (docs/rtl.md).

Bit-exact with the golden `hrn_hw.golden.feature_hash` (docs/design.md index hash):
u = fmix32(fmix32(j) ^ seed), bucket = (u * s) >> 32, sign = -1 if bit 0 of u else +1, and
phi[bucket] += sign * y in 32-bit accumulators (the export bounds every bucket sum below 2^31,
so the accumulators never wrap on an exported model).

Parameter `words` W (a power of two; docs/rtl.md "Multi-word streams"): the input takes W map
elements per beat (element j in beat j // W, position j % W; positions past n carry zero and
are hashed, which adds nothing) and the output streams W phi words per beat (positions past s
zero). W = 1 is the one-element-per-cycle unit.

Interface (clock `clk`, synchronous reset `rst`):
- `seed` (32): the hash function's seed; held stable while a frame is hashed (IN and DRAIN).
- input stream `in_valid` / `in_ready` / `in_data` / `in_last`: the map's raw integers in flat
  (CHW) order, W per beat; the flat index j is counted here from 0 per frame; `in_last` marks
  the frame's last beat. `in_ready` is high in phase IN: one beat per cycle in steady state.
- output stream `out_valid` / `out_ready` / `out_data` / `out_last`: phi[0..s-1] in order, W
  words per beat, after the pipeline has drained; each entry is cleared as it is read, so the
  memories are zero for the next frame without a clearing pass. Back-pressure is honoured.

Pipeline (beat accepted at edge 0), one copy per position, timing closure on an ECP5 (docs/rtl.md
"Timing closure": nothing between a register and a multiplier, at most one adder after one):
- index: fmix32's first product xs(j, 16) * C1 mod 2^32 is kept per position for the beat at
  the input (a counter stepped by W * C1 on each beat while every index is below 2^16, where
  xs(j, 16) = j; else a look-ahead pipeline of split products, advanced on each beat), so
- 1: xs(j * C1, 13) registered;
- 2, 3: times C2 (registered partial products of 17-bit pieces, those wholly above bit 31
  dropped; then their sum mod 2^32, the xor-shift and the seed, registered);
- 4, 5: times C1 (the same), then xs(., 13);
- 6, 7: times C2, then u = xs(., 16) and the sign (bit 0 of u);
- 8, 9: bucket (u * s) >> 32 (shift-and-add in two halves when s has few signed digits, else
  split products; then their sum): the phi memory's read address;
- 10: the element negated when the sign is -1; the memory's read data;
- 11: the read data registered, then the read-modify-write: the word, or the sum written one or
  two cycles before to the same bucket (the read of stage 9 does not see them), plus the
  element, written back.

Each position has a private accumulator of s buckets, split into W banks by bucket mod W
(bank b holds buckets b, b + W, ...; row r of bank b is bucket rW + b), so positions never
conflict; back-to-back elements of one bucket need no stall (the forwarding above). The
read-out reads row r of all W x W banks, registers the read data (clearing the row), then the
sums of the W positions' partials of each output word (an adder tree), a pipeline that holds
under back-pressure.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.rtl.arith import CHUNK, chunks, csd_digits
from hrn_hw.rtl.rows import beats, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

C1 = 0x85EBCA6B
C2 = 0xC2B2AE35
MASK32 = (1 << 32) - 1

# pipeline register stages between the input handshake and the phi write (see cycles.py)
HASH_STAGES = 11
READ_LATENCY = 3      # OUT: the phi memory's synchronous read, its register, the registered sums
COUNTER_LIMIT = 1 << 16   # indices below it: xs(j, 16) == j, so j * C1 is a counter
CSD_MAX = 6           # s with at most this many signed digits: the bucket product as shifts and adds


def _xs(x, k):
    """x ^ (x >> k) on a 32-bit unsigned value."""
    return x ^ (x >> k)


def _xs_int(x: int, k: int) -> int:
    return (x ^ (x >> k)) & MASK32


def _pieces(c: int, width: int) -> list[tuple[int, int]]:
    """A non-negative constant of `width` bits as [(shift, piece)], pieces of CHUNK bits."""
    return [(lo, (c >> lo) & ((1 << CHUNK) - 1)) for lo in range(0, width, CHUNK)]


def _products32(x, c: int):
    """The partial products of (x * c) mod 2^32 (x a 32-bit expression) that reach below bit
    32, as `_product_terms` lists them: [(shift, x piece, c piece as a Const, kept bits)]."""
    return [(sh, x[sx:sx + min(CHUNK, 32 - sx)][:keep], pc, keep) for sh, sx, _, pc, keep in _product_terms(c)]


def _mul32_split(m: Module, name: str, x, c: int):
    """(x * c) mod 2^32 of a 32-bit expression x in two stages: x registered once per partial
    product, the piece that multiplier needs (a register next to each multiplier drives it
    alone; the copies of one piece get reset values 0 and all ones, so synthesis keeps them
    apart), then the partial products registered; returns their sum (an expression for the
    second stage's register)."""
    regs = []
    for k, (sh, sx, sc, pc, keep) in enumerate(_product_terms(c)):
        w = min(CHUNK, 32 - sx, keep)
        xr = Signal(w, name=f"{name}x{k}", init=0 if sc == 0 else (1 << w) - 1)
        m.d.sync += xr.eq(x[sx:sx + w])
        r = Signal(keep, name=f"{name}pp{k}")
        m.d.sync += r.eq(xr * pc)
        regs.append((sh, r))
    return _sum32(regs)


def _product_terms(c: int):
    """The partial products of (x * c) mod 2^32 that reach below bit 32, x in CHUNK-bit pieces:
    [(shift, x piece's shift, c piece's shift, c piece as a Const, kept bits)]."""
    out = []
    for sx in range(0, 32, CHUNK):
        for sc, pc in _pieces(c, 32):
            sh = sx + sc
            if sh < 32 and pc:
                out.append((sh, sx, sc, Const(pc, CHUNK), min(32 - sh, min(CHUNK, 32 - sx) + CHUNK)))
    return out


def _sum32(regs):
    """sum(r << shift) mod 2^32 of registered partial products: bits below the second shift
    come from the lowest product alone, one adder tree for the rest."""
    regs = sorted(regs, key=lambda t: t[0])
    if len(regs) == 1:
        sh, r = regs[0]
        return (r << sh)[:32]
    split = regs[1][0]
    base_sh, base = regs[0]
    assert base_sh == 0
    hi = tree_sum([base[split:]] + [r << (sh - split) for sh, r in regs[1:]])
    return Cat(base[:split], hi[:32 - split])


def _products32_int(x: int, c: int) -> list[int]:
    """The register values of `_mul32_split`'s partial products for a constant x."""
    return [((((x >> sx) & ((1 << CHUNK) - 1)) & ((1 << keep) - 1)) * pc.value) & ((1 << keep) - 1)
            for _, sx, _, pc, keep in _product_terms(c)]


def hash_unit_phases(n: int, s: int, words: int = 1) -> dict:
    """Cycles per phase of the hash unit for a map of n elements into s buckets, W words per
    beat."""
    return {
        "in": beats(n, words),      # one beat (W elements) per cycle
        "pipeline": HASH_STAGES,    # xs(j C1), 3 x (partial products, sum), bucket (2), read, RMW
        "drain": 1,                 # the phase FSM sees the empty pipeline
        "read_latency": READ_LATENCY,   # phi memory read, read data register, registered sums
        "out": beats(s, words),     # phi rows, one per cycle (cleared as read)
    }


def hash_unit_cycles(n: int, s: int, words: int = 1) -> int:
    """Hash unit latency: ceil(n / W) + ceil(s / W) + 15 (n + s + 15 at W = 1)."""
    return sum(hash_unit_phases(n, s, words).values())


class HashUnit(wiring.Component):
    """Streamed index hash into s buckets, W elements per beat.

    Parameters: s (buckets), in_width / in_signed (the map's integer format), max_n (largest
    map size: whether the index product is a counter), acc_width (phi accumulator, 32 by
    contract), words (W elements / phi words per beat, a power of two).
    """

    def __init__(self, s: int, in_width: int, in_signed: bool = True, max_n: int = 1 << 16,
                 acc_width: int = 32, words: int = 1):
        if not 1 <= s < (1 << 20):
            raise ValueError("s out of range")
        if max_n > (1 << 32):
            raise ValueError("flat index must fit 32 bits")
        if int(words) < 1 or int(words) & (int(words) - 1):
            raise ValueError("words must be a power of two (bucket mod W selects the bank)")
        self.s, self.in_width, self.in_signed = s, in_width, in_signed
        self.max_n, self.acc_width, self.words = max_n, acc_width, int(words)
        super().__init__({
            "seed": In(32),
            **stream_in("in", row_shape(in_width, self.words, in_signed), last=True),
            **stream_out("out", row_shape(acc_width, self.words), last=True),
            "busy": Out(1),
        })

    def _index_product(self, m: Module, i: int, take, restart):
        """xs(j, 16) * C1 mod 2^32 for position i's index j of the beat at the input (a
        register): advanced on each beat, back to index i when a frame ends."""
        W, name = self.words, f"h{i}_"
        g = Signal(32, name=f"{name}g", init=(_xs_int(i, 16) * C1) & MASK32)
        if beats(self.max_n, W) * W <= COUNTER_LIMIT:
            with m.If(restart):
                m.d.sync += g.eq(g.init)
            with m.Elif(take):
                m.d.sync += g.eq(g + ((W * C1) & MASK32))
            return g
        # look-ahead: ja / fa two beats ahead, the partial products one beat ahead, g
        ja = Signal(32, name=f"{name}ja", init=(i + 2 * W) & MASK32)
        fa = Signal(32, name=f"{name}fa", init=_xs_int((i + 2 * W) & MASK32, 16))
        nxt = Signal(32, name=f"{name}ja_next")
        m.d.comb += nxt.eq(ja + W)
        inits = _products32_int(_xs_int((i + W) & MASK32, 16), C1)
        regs, loads = [], []
        for k, ((sh, px, pc, keep), init) in enumerate(zip(_products32(fa, C1), inits)):
            r = Signal(keep, name=f"{name}ga_pp{k}", init=init)
            regs.append((sh, r))
            loads.append((r, px * pc))
        with m.If(restart):
            m.d.sync += [ja.eq(ja.init), fa.eq(fa.init), g.eq(g.init)] + [r.eq(r.init) for _, r in regs]
        with m.Elif(take):
            m.d.sync += [ja.eq(nxt), fa.eq(_xs(nxt, 16)), g.eq(_sum32(regs))] + [r.eq(v) for r, v in loads]
        return g

    def _bucket(self, m: Module, name: str, u):
        """(u * s) >> 32 in two stages: partial sums registered, then their sum (returned)."""
        digits = csd_digits(self.s)
        if len(digits) <= CSD_MAX:
            terms = [(u << k) if d > 0 else -(u << k) for k, d in digits]
            half = (len(terms) + 1) // 2
            groups = [terms[:half], terms[half:]] if len(terms) > 1 else [terms]
        else:
            groups = [[px * Const(pc, CHUNK)] for sx, px in chunks(u, 32, False)
                      for sc, pc in _pieces(self.s, self.s.bit_length()) if pc]
            shifts = [sx + sc for sx, _ in chunks(u, 32, False)
                      for sc, pc in _pieces(self.s, self.s.bit_length()) if pc]
        regs = []
        for k, grp in enumerate(groups):
            e = tree_sum(grp)
            r = Signal(e.shape(), name=f"{name}bp{k}")
            m.d.sync += r.eq(e)
            regs.append(r)
        if len(digits) > CSD_MAX:
            regs = [r << sh for r, sh in zip(regs, shifts)]
        return tree_sum(regs)[32:]

    def _index_hash(self, m: Module, i: int, take, restart, y9):
        """Stages 1..10 of position i (y9 its element at stage 9): fmix32(fmix32(j) ^ seed) in
        seven stages, bucket (u * s) >> 32 at stage 9 and the signed element -y / +y at stage
        10. Returns (bucket9, bucket10, delta10)."""
        name = f"h{i}_"
        g = self._index_product(m, i, take, restart)
        # a1, b3, a5: the copies of each multiply's input (stages 1, 3, 5, in _mul32_split)
        b3 = _xs(_xs(_mul32_split(m, f"{name}m2_", _xs(g, 13), C2), 16) ^ self.seed, 16)
        a5 = _xs(_mul32_split(m, f"{name}m4_", b3, C1), 13)
        u7 = Signal(32, name=f"{name}u7")
        m.d.sync += u7.eq(_xs(_mul32_split(m, f"{name}m6_", a5, C2), 16))
        bw = max(1, (self.s - 1).bit_length())
        bucket9, bucket10 = (Signal(bw, name=f"{name}bucket{k}") for k in (9, 10))
        neg8, neg9 = (Signal(name=f"{name}neg{k}") for k in (8, 9))
        delta10 = Signal(signed(self.in_width + 1), name=f"{name}delta10")
        m.d.sync += [bucket9.eq(self._bucket(m, name, u7)), neg8.eq(u7[0]), neg9.eq(neg8),
                     bucket10.eq(bucket9), delta10.eq(Mux(neg9, -y9, y9))]
        return bucket9, bucket10, delta10

    def _bank(self, m: Module, name: str, depth: int):
        """One phi bank (depth x acc_width, zero at reset): its write port, a read port (not
        transparent, and a read of the row being written is don't-care, `no_rw_check`: the
        read-modify-write forwards the words it wrote itself, so synthesis adds no collision
        logic after the block RAM) and the read data's register."""
        m.submodules[name] = mem = memory.Memory(shape=signed(self.acc_width), depth=depth, init=[],
                                                 attrs={"no_rw_check": 1})
        return mem.write_port(), mem.read_port(), Signal(signed(self.acc_width), name=f"{name}_rd")

    def elaborate(self, platform):
        """The phi banks, the hash pipelines, the read-out and the phase sequencer."""
        m = Module()
        W, rows = self.words, beats(self.s, self.words)

        # ports[i][b]: position i's bank b; W = 1: the one memory `phi` of s words
        ports = [[self._bank(m, "phi" if W == 1 else f"phi_{i}_{b}", rows) for b in range(W)]
                 for i in range(W)]

        # phase: 0 = IN (accept beats), 1 = DRAIN (pipeline empties), 2 = OUT (read phi out)
        phase = Signal(2)
        pipe = self._pipeline(m, phase)
        out = self._read_out_regs(m, ports, phase, pipe.v, rows)

        with m.If(phase == 2):
            self._read_out(m, ports, out, phase, rows)
        self._accumulate(m, ports, pipe, phase == 2)
        for _, rd, r in (p for bank in ports for p in bank):
            with m.If((phase != 2) | out.adv):
                m.d.sync += r.eq(rd.data)
        self._sequencer(m, phase, pipe, out)
        return m

    def _pipeline(self, m: Module, phase):
        """IN: the input handshake and the hash pipelines (a valid bit and the beat per stage,
        the index hash per position). Returns v, v12, take and hashes."""
        W = self.words
        v = [Signal(name=f"v{k}") for k in range(1, HASH_STAGES + 1)]
        v12 = Signal(name="v12")     # the element written one cycle before (forwarding only)
        y = [Signal(row_shape(self.in_width, W, self.in_signed), name=f"y{k}")
             for k in range(1, 10)]
        take = self.in_valid & self.in_ready
        restart = take & self.in_last
        m.d.comb += self.in_ready.eq(phase == 0)
        m.d.sync += [v[0].eq(take), y[0].eq(self.in_data)]
        for k in range(1, len(v)):
            m.d.sync += v[k].eq(v[k - 1])
        m.d.sync += v12.eq(v[-1])
        for k in range(1, len(y)):
            m.d.sync += y[k].eq(y[k - 1])
        y9 = row_words(y[8], self.in_width, W, self.in_signed)
        hashes = [self._index_hash(m, i, take, restart, y9[i]) for i in range(W)]
        return SimpleNamespace(v=v, v12=v12, take=take, hashes=hashes)

    def _read_out_regs(self, m: Module, ports, phase, v, rows: int):
        """OUT's registers and outputs: the row to read, the rows in the memories' read data and
        in their registers (with valid bits), the W sums of the W positions' partials
        (registered) with their row and valid. Returns ra, da, dv, ra2, rv, oa, ov, adv, sums."""
        W = self.words
        aw = max(1, (rows - 1).bit_length())
        bw = max(1, rows.bit_length())
        ra = Signal(bw)          # next row to read
        da, ra2, oa = Signal(aw), Signal(aw), Signal(aw)  # row in the read data, its register, out_data
        dv, rv, ov = Signal(), Signal(), Signal()
        adv = Signal()
        sums = [Signal(signed(self.acc_width), name=f"phi_sum{b}") for b in range(W)]
        m.d.comb += [
            adv.eq(~ov | self.out_ready),
            self.out_valid.eq(ov),
            self.out_data.eq(Cat(*sums)),
            self.out_last.eq(ov & (oa == rows - 1)),
            self.busy.eq((phase != 0) | Cat(*v).any()),
        ]
        return SimpleNamespace(ra=ra, da=da, dv=dv, ra2=ra2, rv=rv, oa=oa, ov=ov, adv=adv, sums=sums)

    def _read_out(self, m: Module, ports, out, phase, rows: int):
        """OUT, a pipeline that holds while out_data waits: read row ra of every bank, register
        the read data (clearing the row in the memories), register the sums."""
        W, adv = self.words, out.adv
        for wr, rd, _ in (p for bank in ports for p in bank):
            m.d.comb += [rd.addr.eq(out.ra), rd.en.eq(adv)]
            m.d.comb += [wr.addr.eq(out.da), wr.en.eq(adv & out.dv)]     # data: zero (_accumulate)
        with m.If(adv):
            m.d.sync += [out.ov.eq(out.rv), out.oa.eq(out.ra2), out.rv.eq(out.dv), out.ra2.eq(out.da),
                         out.dv.eq(out.ra < rows)]
            m.d.sync += [s.eq(tree_sum(ports[i][b][2] for i in range(W))) for b, s in enumerate(out.sums)]
            with m.If(out.ra < rows):
                m.d.sync += [out.da.eq(out.ra), out.ra.eq(out.ra + 1)]
        with m.If(out.ov & self.out_ready & (out.oa == rows - 1)):
            m.d.sync += [phase.eq(0), out.ra.eq(0), out.ov.eq(0), out.dv.eq(0), out.rv.eq(0)]

    def _accumulate(self, m: Module, ports, pipe, clear):
        """Hashing: stage 9 addresses the position's banks, stage 10 holds the read data, stage
        11 adds the element to the registered word (or to the sum written one or two cycles
        before to the same bucket) and writes it into the bank of bucket mod W. In OUT
        (`clear`) the same adder's operands are zero from the phase's second cycle on: the
        write data is zero for the read-out's clearing writes without a mux after the adder."""
        W, lw = self.words, self.words.bit_length() - 1      # bucket = row * W + bank
        v11, v12 = pipe.v[10], pipe.v12
        for i, ((bucket9, bucket10, delta10), bank) in enumerate(zip(pipe.hashes, ports)):
            name = f"h{i}_"
            bucket11, bucket12 = Signal.like(bucket10, name=f"{name}bucket11"), Signal.like(bucket10, name=f"{name}bucket12")
            delta11 = Signal.like(delta10, name=f"{name}delta11")
            f1, f2 = Signal(name=f"{name}fwd1"), Signal(name=f"{name}fwd2")
            r11 = [r for _, _, r in bank]
            acc, acc1, acc2 = (Signal(signed(self.acc_width), name=f"{name}acc{k}") for k in ("", "1", "2"))
            m.d.sync += [bucket11.eq(bucket10), bucket12.eq(bucket11), delta11.eq(Mux(clear, 0, delta10)),
                         f1.eq(~clear & v11 & (bucket11 == bucket10)),
                         f2.eq(clear | (v12 & (bucket12 == bucket10))),
                         acc1.eq(acc), acc2.eq(Mux(clear, 0, acc1))]
            word = r11[0] if W == 1 else Array(r11)[bucket11[:lw]]
            m.d.comb += acc.eq(Mux(f1, acc1, Mux(f2, acc2, word)) + delta11)
            for b, (wr, rd, _) in enumerate(bank):
                m.d.comb += wr.data.eq(acc)
                with m.If(~clear):
                    m.d.comb += [rd.addr.eq(bucket9[lw:]), rd.en.eq(1)]
                    m.d.comb += [wr.addr.eq(bucket11[lw:]), wr.en.eq(v11 & (bucket11[:lw] == b))]

    def _sequencer(self, m: Module, phase, pipe, out):
        """The phase machine: IN until the frame's last beat, DRAIN until the pipeline is empty,
        then OUT (which returns to IN itself)."""
        with m.If(phase == 0):
            with m.If(pipe.take & self.in_last):
                m.d.sync += phase.eq(1)
        with m.If(phase == 1):
            with m.If(~Cat(*pipe.v).any()):
                m.d.sync += [phase.eq(2), out.ra.eq(0), out.ov.eq(0), out.dv.eq(0), out.rv.eq(0)]
