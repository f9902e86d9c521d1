"""Hash unit: phi_k(y) of one map, streamed W elements per beat (docs/rtl.md).

Bit-exact with the golden `hrn_hw.golden.feature_hash` (DESIGN.md index hash):
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

Pipeline (beat accepted at edge 0), one copy per position: index register (1), fmix32(j) in
two multiply stages (2, 3), XOR with the seed and the outer fmix32 in two multiply stages
(4, 5), bucket/sign (6, also the phi memory's read address), read-modify-write of phi (7:
the bucket and the element, negated when the sign is -1, are registered; one adder adds it to
the word read from the bucket's bank).

Each position has a private accumulator of s buckets, split into W banks by bucket mod W
(bank b holds buckets b, b + W, ...; row r of bank b is bucket rW + b), so positions never
conflict; a bank's read port is transparent to its write port, so back-to-back elements of
one bucket need no stall. The read-out reads row r of all W x W banks in one cycle and sums
the W positions' partials of each output word (an adder tree after the memories).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.rtl.rows import beats, pack_words, row_shape, row_words, tree_sum
from hrn_hw.rtl.streams import stream_in, stream_out

C1 = 0x85EBCA6B
C2 = 0xC2B2AE35

# pipeline register stages between the input handshake and the phi write (see cycles.py)
HASH_STAGES = 7


def _xs(x, k):
    """x ^ (x >> k) on a 32-bit unsigned value."""
    return x ^ (x >> k)


def _mul32(x, c):
    """(x * c) mod 2^32."""
    return (x * c)[:32]


def hash_unit_phases(n: int, s: int, words: int = 1) -> dict:
    """Cycles per phase of the hash unit for a map of n elements into s buckets, W words per
    beat."""
    return {
        "in": beats(n, words),      # one beat (W elements) per cycle
        "pipeline": HASH_STAGES,    # index, 2 x fmix32 (two multiply stages each), bucket, RMW
        "drain": 1,                 # the phase FSM sees the empty pipeline
        "read_latency": 1,          # synchronous phi memory read before the first beat
        "out": beats(s, words),     # phi rows, one per cycle (cleared as read)
    }


def hash_unit_cycles(n: int, s: int, words: int = 1) -> int:
    """Hash unit latency: ceil(n / W) + ceil(s / W) + 9 (n + s + 9 at W = 1)."""
    return sum(hash_unit_phases(n, s, words).values())


class HashUnit(wiring.Component):
    """Streamed index hash into s buckets, W elements per beat.

    Parameters: s (buckets), in_width / in_signed (the map's integer format), max_n (largest
    map size, sets the index counter width), acc_width (phi accumulator, 32 by contract),
    words (W elements / phi words per beat, a power of two).
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

    def _index_hash(self, m: Module, i: int, jb1, y6):
        """Stages 2..7 of position i (flat index jb1 * W + i, jb1 the beat index at stage 1;
        y6 its element at stage 6): fmix32(fmix32(j) ^ seed) in four multiply stages, bucket
        (u * s) >> 32 and sign (bit 0 of u) at stage 6, the bucket and the signed element
        -y6 / +y6 at stage 7. Returns (bucket6, bucket7, delta7)."""
        name = f"h{i}_"
        j1 = Signal(32, name=f"{name}j1")
        p2, p3, p4, p5 = (Signal(32, name=f"{name}p{k}") for k in (2, 3, 4, 5))
        m.d.comb += j1.eq(Cat(Const(i, self.words.bit_length() - 1), jb1))
        m.d.sync += [
            p2.eq(_mul32(_xs(j1, 16), C1)),
            p3.eq(_mul32(_xs(p2, 13), C2)),
            p4.eq(_mul32(_xs(_xs(p3, 16) ^ self.seed, 16), C1)),
            p5.eq(_mul32(_xs(p4, 13), C2)),
        ]
        u = Signal(32, name=f"{name}u")
        bucket6, bucket7 = (Signal(max(1, (self.s - 1).bit_length()), name=f"{name}bucket{k}") for k in (6, 7))
        neg6 = Signal(name=f"{name}neg6")
        delta7 = Signal(signed(self.in_width + 1), name=f"{name}delta7")
        m.d.comb += u.eq(_xs(p5, 16))
        m.d.sync += [bucket6.eq((u * self.s)[32:]), neg6.eq(u[0]), bucket7.eq(bucket6),
                     delta7.eq(Mux(neg6, -y6, y6))]
        return bucket6, bucket7, delta7

    def _bank(self, m: Module, name: str, depth: int):
        """One phi bank (depth x acc_width, zero at reset): its write port and a read port
        transparent to it."""
        m.submodules[name] = mem = memory.Memory(shape=signed(self.acc_width), depth=depth, init=[])
        wr = mem.write_port()
        return wr, mem.read_port(transparent_for=(wr,))

    def elaborate(self, platform):
        """The phi banks, the hash pipelines, the read-out and the phase sequencer."""
        m = Module()
        W, rows = self.words, beats(self.s, self.words)
        jw = max(1, (beats(self.max_n, W) - 1).bit_length())

        # ports[i][b]: position i's bank b; W = 1: the one memory `phi` of s words
        ports = [[self._bank(m, "phi" if W == 1 else f"phi_{i}_{b}", rows) for b in range(W)]
                 for i in range(W)]

        # phase: 0 = IN (accept beats), 1 = DRAIN (pipeline empties), 2 = OUT (read phi out)
        phase = Signal(2)
        jb = Signal(jw)          # beat index in the frame
        pipe = self._pipeline(m, phase, jb, jw)
        out = self._read_out_regs(m, ports, phase, pipe.v, rows)

        with m.If(phase == 2):
            self._read_out(m, ports, out, phase, rows)
        with m.Else():
            self._accumulate(m, ports, pipe)
        self._sequencer(m, phase, jb, pipe, out)
        return m

    def _pipeline(self, m: Module, phase, jb, jw: int):
        """IN: the input handshake and the hash pipelines (a valid bit and the beat per stage,
        the index hash per position). Returns v, take and hashes."""
        W = self.words
        v = [Signal(name=f"v{k}") for k in range(1, HASH_STAGES + 1)]
        y = [Signal(row_shape(self.in_width, W, self.in_signed), name=f"y{k}")
             for k in range(1, HASH_STAGES)]
        jb1 = Signal(jw)
        take = self.in_valid & self.in_ready
        m.d.comb += self.in_ready.eq(phase == 0)
        m.d.sync += [v[0].eq(take), y[0].eq(self.in_data), jb1.eq(jb)]
        for k in range(1, HASH_STAGES):
            m.d.sync += v[k].eq(v[k - 1])
        for k in range(1, HASH_STAGES - 1):
            m.d.sync += y[k].eq(y[k - 1])
        y6 = row_words(y[5], self.in_width, W, self.in_signed)
        hashes = [self._index_hash(m, i, jb1, y6[i]) for i in range(W)]
        return SimpleNamespace(v=v, take=take, hashes=hashes)

    def _read_out_regs(self, m: Module, ports, phase, v, rows: int):
        """OUT's registers and outputs: the row to read, the row on out_data and its valid, the
        W sums of the W positions' partials. Returns ra, oa, ov, adv."""
        W = self.words
        aw = max(1, (rows - 1).bit_length())
        bw = max(1, rows.bit_length())
        ra = Signal(bw)          # next row to read
        oa = Signal(aw)          # row on out_data
        ov = Signal()
        adv = Signal()
        sums = [tree_sum(ports[i][b][1].data for i in range(W)) for b in range(W)]
        m.d.comb += [
            adv.eq(~ov | self.out_ready),
            self.out_valid.eq(ov),
            self.out_data.eq(pack_words(m, sums, self.acc_width, name="phi_sum")),
            self.out_last.eq(ov & (oa == rows - 1)),
            self.busy.eq((phase != 0) | Cat(*v).any()),
        ]
        return SimpleNamespace(ra=ra, oa=oa, ov=ov, adv=adv)

    def _read_out(self, m: Module, ports, out, phase, rows: int):
        """OUT: read row ra of every bank, present the sums, clear the row on its handshake."""
        ra, oa, ov, adv = out.ra, out.oa, out.ov, out.adv
        for wr, rd in (p for bank in ports for p in bank):
            m.d.comb += [rd.addr.eq(ra), rd.en.eq(adv)]
            m.d.comb += [wr.addr.eq(oa), wr.data.eq(0), wr.en.eq(ov & self.out_ready)]
        with m.If(adv):
            m.d.sync += ov.eq(ra < rows)
            with m.If(ra < rows):
                m.d.sync += [oa.eq(ra), ra.eq(ra + 1)]
        with m.If(ov & self.out_ready & (oa == rows - 1)):
            m.d.sync += [phase.eq(0), ra.eq(0), ov.eq(0)]

    def _accumulate(self, m: Module, ports, pipe):
        """Hashing: stage 6 addresses the position's banks, stage 7 writes phi[bucket] +- y into
        the bank of bucket mod W (one adder per position)."""
        W, lw = self.words, self.words.bit_length() - 1      # bucket = row * W + bank
        for i, ((bucket6, bucket7, delta7), bank) in enumerate(zip(pipe.hashes, ports)):
            cur = bank[0][1].data if W == 1 else Array(rd.data for _, rd in bank)[bucket7[:lw]]
            acc = Signal(signed(self.acc_width), name=f"h{i}_acc")
            m.d.comb += acc.eq(cur + delta7)
            for b, (wr, rd) in enumerate(bank):
                m.d.comb += [rd.addr.eq(bucket6[lw:]), rd.en.eq(1)]
                m.d.comb += [wr.addr.eq(bucket7[lw:]), wr.en.eq(pipe.v[6] & (bucket7[:lw] == b)), wr.data.eq(acc)]

    def _sequencer(self, m: Module, phase, jb, pipe, out):
        """The phase machine: IN until the frame's last beat, DRAIN until the pipeline is empty,
        then OUT (which returns to IN itself)."""
        with m.If(phase == 0):
            with m.If(pipe.take):
                m.d.sync += jb.eq(jb + 1)
                with m.If(self.in_last):
                    m.d.sync += [phase.eq(1), jb.eq(0)]
        with m.If(phase == 1):
            with m.If(~Cat(*pipe.v).any()):
                m.d.sync += [phase.eq(2), out.ra.eq(0), out.ov.eq(0)]
