"""Hash unit: phi_k(y) of one map, streamed one element per cycle (docs/rtl.md).

Bit-exact with the golden `hrn_hw.golden.feature_hash` (DESIGN.md index hash):
u = fmix32(fmix32(j) ^ seed), bucket = (u * s) >> 32, sign = -1 if bit 0 of u else +1, and
phi[bucket] += sign * y in a 32-bit accumulator memory of s entries (the export bounds every
bucket sum below 2^31, so the accumulator never wraps on an exported model).

Interface (clock `clk`, synchronous reset `rst`):
- `seed` (32): the hash function's seed; held stable while a frame is hashed (IN and DRAIN).
- input stream `in_valid` / `in_ready` / `in_data` / `in_last`: the map's raw integers in flat
  (CHW) order; the flat index j is counted here from 0 per frame; `in_last` marks the frame's
  last element. `in_ready` is high in phase IN: one element per cycle in steady state.
- output stream `out_valid` / `out_ready` / `out_data` / `out_last`: phi[0..s-1] in order,
  after the pipeline has drained; each entry is cleared as it is read, so the memory is zero
  for the next frame without a clearing pass. Back-pressure on the output is honoured.

Pipeline (element accepted at edge 0): index register (1), fmix32(j) in two multiply stages
(2, 3), XOR with the seed and the outer fmix32 in two multiply stages (4, 5), bucket/sign
(6, also the phi memory's read address), read-modify-write of phi (7). The memory's read port is
transparent to its write port, so back-to-back elements of one bucket need no stall.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

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


def hash_unit_phases(n: int, s: int, lanes: int = 1) -> dict:
    """Cycles per phase of the hash unit for a map of n elements into s buckets."""
    if lanes != 1:
        raise NotImplementedError("hash unit: only lanes = 1 so far")
    return {
        "in": n,                    # one element per cycle
        "pipeline": HASH_STAGES,    # index, 2 x fmix32 (two multiply stages each), bucket, RMW
        "drain": 1,                 # the phase FSM sees the empty pipeline
        "read_latency": 1,          # synchronous phi memory read before the first word
        "out": s,                   # phi[0..s-1], one per cycle (cleared as read)
    }


def hash_unit_cycles(n: int, s: int, lanes: int = 1) -> int:
    """Hash unit latency: n + s + 9 (lanes = 1)."""
    return sum(hash_unit_phases(n, s, lanes).values())


class HashUnit(wiring.Component):
    """Streamed index hash into s buckets (lanes = 1).

    Parameters: s (buckets), in_width / in_signed (the map's integer format), max_n (largest
    map size, sets the index counter width), acc_width (phi accumulator, 32 by contract).
    """

    def __init__(self, s: int, in_width: int, in_signed: bool = True, max_n: int = 1 << 16,
                 acc_width: int = 32, lanes: int = 1):
        if lanes != 1:
            raise NotImplementedError("hash unit: only lanes = 1 so far (docs/rtl.md)")
        if not 1 <= s < (1 << 20):
            raise ValueError("s out of range")
        if max_n > (1 << 32):
            raise ValueError("flat index must fit 32 bits")
        self.s, self.in_width, self.in_signed = s, in_width, in_signed
        self.max_n, self.acc_width = max_n, acc_width
        in_shape = signed(in_width) if in_signed else unsigned(in_width)
        super().__init__({
            "seed": In(32),
            "in_valid": In(1),
            "in_ready": Out(1),
            "in_data": In(in_shape),
            "in_last": In(1),
            "out_valid": Out(1),
            "out_ready": In(1),
            "out_data": Out(signed(acc_width)),
            "out_last": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        s = self.s
        in_shape = signed(self.in_width) if self.in_signed else unsigned(self.in_width)
        jw = max(1, (self.max_n - 1).bit_length())
        aw = max(1, (s - 1).bit_length())
        bw = max(1, s.bit_length())

        m.submodules.phi = phi = memory.Memory(shape=signed(self.acc_width), depth=s, init=[])
        wr = phi.write_port()
        rd = phi.read_port(transparent_for=(wr,))

        # phase: 0 = IN (accept elements), 1 = DRAIN (pipeline empties), 2 = OUT (read phi out)
        phase = Signal(2)
        j = Signal(jw)

        # ---- hash pipeline: valid bit, value, element per stage --------------------------------
        v = [Signal(name=f"v{k}") for k in range(1, HASH_STAGES + 1)]
        y = [Signal(in_shape, name=f"y{k}") for k in range(1, HASH_STAGES + 1)]
        j1 = Signal(32)
        p2, p3, p4, p5 = (Signal(32, name=f"p{k}") for k in (2, 3, 4, 5))
        bucket6 = Signal(aw)
        neg6 = Signal()
        bucket7 = Signal(aw)
        neg7 = Signal()

        take = self.in_valid & self.in_ready
        m.d.comb += self.in_ready.eq(phase == 0)
        m.d.sync += [v[0].eq(take), y[0].eq(self.in_data), j1.eq(j)]
        for k in range(1, HASH_STAGES):
            m.d.sync += [v[k].eq(v[k - 1]), y[k].eq(y[k - 1])]
        m.d.sync += [
            p2.eq(_mul32(_xs(j1, 16), C1)),
            p3.eq(_mul32(_xs(p2, 13), C2)),
            p4.eq(_mul32(_xs(_xs(p3, 16) ^ self.seed, 16), C1)),
            p5.eq(_mul32(_xs(p4, 13), C2)),
        ]
        u = Signal(32)
        m.d.comb += u.eq(_xs(p5, 16))
        m.d.sync += [bucket6.eq((u * s)[32:]), neg6.eq(u[0]), bucket7.eq(bucket6), neg7.eq(neg6)]

        # ---- read-out registers ------------------------------------------------------------------
        ra = Signal(bw)          # next address to read
        oa = Signal(aw)          # address of the word on out_data
        ov = Signal()
        adv = Signal()
        m.d.comb += [
            adv.eq(~ov | self.out_ready),
            self.out_valid.eq(ov),
            self.out_data.eq(rd.data),
            self.out_last.eq(ov & (oa == s - 1)),
            self.busy.eq((phase != 0) | Cat(*v).any()),
        ]

        with m.If(phase == 2):
            # read-out: read ra, present it, clear the presented word on its handshake
            m.d.comb += [rd.addr.eq(ra), rd.en.eq(adv)]
            m.d.comb += [wr.addr.eq(oa), wr.data.eq(0), wr.en.eq(ov & self.out_ready)]
            with m.If(adv):
                m.d.sync += ov.eq(ra < s)
                with m.If(ra < s):
                    m.d.sync += [oa.eq(ra), ra.eq(ra + 1)]
            with m.If(ov & self.out_ready & (oa == s - 1)):
                m.d.sync += [phase.eq(0), ra.eq(0), ov.eq(0)]
        with m.Else():
            # hashing: stage 6 addresses the memory, stage 7 writes phi[bucket] +- y
            m.d.comb += [rd.addr.eq(bucket6), rd.en.eq(1)]
            m.d.comb += [wr.addr.eq(bucket7), wr.en.eq(v[6]),
                         wr.data.eq(Mux(neg7, rd.data - y[6], rd.data + y[6]))]

        with m.If(phase == 0):
            with m.If(take):
                m.d.sync += j.eq(j + 1)
                with m.If(self.in_last):
                    m.d.sync += [phase.eq(1), j.eq(0)]
        with m.If(phase == 1):
            with m.If(~Cat(*v).any()):
                m.d.sync += [phase.eq(2), ra.eq(0), ov.eq(0)]
        return m
