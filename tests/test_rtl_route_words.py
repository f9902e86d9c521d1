"""Normaliser and projection comparator at W words per beat and r root bits per cycle, swept
over odd shapes on Amaranth's Python simulator (no Verilator build, about a second each):
W not dividing s, W = s, W > s, odd r, r = 2K + 1 (the division in one cycle). Bit-exact with
`ops.normalise` / `project` / `select`, junk in the padding past s ignored, padding of h out
zero, cycles equal to the formulas on unstalled frames; random stalls on both sides.

The Verilator testbenches (sim/test_normaliser.py, sim/test_projection.py) run the paper
sizes at W = 1 and W = 8.
"""

from __future__ import annotations

import sys
from math import ceil
from pathlib import Path

import numpy as np
import pytest

from hrn_hw.fixedpoint import ops
from hrn_hw.fixedpoint.fmt import Fmt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
from simlib import pack_beats, unpack_beat  # noqa: E402

H_FMT, B_FMT, C_FMT = Fmt(16, 14), Fmt(16, 15), Fmt(16, 14)
SAT_FMT = Fmt(8, 10, True, "trn")


def framed(words, W: int, width: int) -> list:
    """Beats of W words, the padding past the frame's end holding the format's extremes."""
    pad = -len(words) % W
    junk = [(1 << (width - 1)) - 1 if k % 2 else -(1 << (width - 1)) for k in range(pad)]
    return pack_beats(list(words) + junk, W, width)


def simulate(dut, frames, read, stall: float = 0.0, seed: int = 0) -> list:
    """Run (beats, n_out, side) frames back to back through `dut`'s in/out streams; `side(ctx)`
    sets side inputs, `read(ctx)` reads an output beat. Returns [(outputs, cycles)] with cycles
    from the first input handshake to the last output handshake, inclusive."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(seed)
    results = []

    async def bench(ctx):
        for beats, n_out, side in frames:
            side(ctx)
            i, out, cyc, first, last = 0, [], 0, None, None
            while len(out) < n_out:
                send = i < len(beats) and not rng.random() < stall
                ready = not rng.random() < stall
                ctx.set(dut.in_valid, send)
                ctx.set(dut.in_data, beats[i] if send else 0)
                ctx.set(dut.out_ready, ready)
                if send and ctx.get(dut.in_ready):
                    first = cyc if first is None else first
                    i += 1
                if ready and ctx.get(dut.out_valid):
                    out.append(read(ctx))
                    last = cyc
                await ctx.tick()
                cyc += 1
                assert cyc < 10_000, "frame does not finish"
            ctx.set(dut.in_valid, 0)
            results.append((out, last - first + 1))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(results) == len(frames)
    return results


def phi_cases(s: int, rng) -> list:
    top = int(np.floor(np.sqrt(((1 << 63) - 1) / s)))
    last = np.zeros(s, dtype=np.int64)
    last[-1] = 1
    return [np.zeros(s, dtype=np.int64), last, np.full(s, top) * np.where(rng.random(s) < 0.5, 1, -1),
            rng.integers(-(1 << 31), 1 << 31, s) // int(np.sqrt(s) + 1), rng.integers(-3, 4, s)]


@pytest.mark.parametrize("s,norm_k,fmt,W,r", [
    (16, 20, SAT_FMT, 3, 3),
    (16, 20, SAT_FMT, 16, 2),
    (16, 20, SAT_FMT, 20, 41),
    (30, 48, H_FMT, 7, 5),
    (7, 48, H_FMT, 1, 3),
])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_normaliser_words(s, norm_k, fmt, W, r, stall):
    from hrn_hw.rtl.normaliser import Normaliser, normaliser_cycles

    dut = Normaliser(s, norm_k, fmt, words=W, root_bits=r)
    phis = phi_cases(s, np.random.default_rng(s + W))
    rows = -(-s // W)
    frames = [(framed(phi, W, 32), rows, lambda ctx: None) for phi in phis]
    read = lambda ctx: (unpack_beat(ctx.get(dut.out_data), W, fmt.width), ctx.get(dut.energy), ctx.get(dut.inv))
    for phi, (out, cyc) in zip(phis, simulate(dut, frames, read, stall, seed=r)):
        h = np.concatenate([o[0] for o in out])
        energy = sum(int(x) * int(x) for x in phi)
        assert {o[1:] for o in out} == {(energy, ops.inv_sqrt(energy, norm_k) if energy else 0)}
        assert np.array_equal(h[:s], ops.normalise(phi[None], norm_k, fmt)[0])
        assert not h[s:].any()
        if not stall:
            assert cyc == normaliser_cycles(s, norm_k, W, r)


@pytest.mark.parametrize("M,m,s,W", [(5, 3, 30, 7), (1, 2, 9, 4), (3, 1, 5, 8), (2, 2, 12, 12)])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_projection_words(M, m, s, W, stall):
    from hrn_hw.rtl.projection import ProjectionComparator, projection_cycles

    rng = np.random.default_rng(M * s + W)
    bases = rng.integers(B_FMT.qmin, B_FMT.qmax + 1, (M, m, s))
    dut = ProjectionComparator(bases, H_FMT, B_FMT, C_FMT, words=W)
    cases = [(rng.integers(-3000, 3001, s), rng.random(M) < 0.7) for _ in range(4)]
    cases += [(np.full(s, H_FMT.qmax), np.ones(M, bool)), (np.zeros(s, np.int64), np.zeros(M, bool))]

    def side(allowed):
        return lambda ctx: ctx.set(dut.allowed, int(sum(1 << u for u in range(M) if allowed[u])))

    def read(ctx):
        coef = np.array(unpack_beat(ctx.get(dut.coef), M * m, C_FMT.width)).reshape(M, m)
        energy = unpack_beat(ctx.get(dut.energy), M, dut.e_width, signed=False)
        return coef, energy, ctx.get(dut.sel), ctx.get(dut.ok)

    frames = [(framed(h, W, H_FMT.width), 1, side(allowed)) for h, allowed in cases]
    for (h, allowed), (((coef, energy, sel, ok),), cyc) in zip(cases, simulate(dut, frames, read, stall)):
        c_gold, e_gold = ops.project(h[None], H_FMT, bases, B_FMT, C_FMT)
        sel_gold, ok_gold = ops.select(e_gold, allowed[None])
        assert np.array_equal(coef, c_gold[0]) and list(energy) == list(e_gold[0])
        assert (sel, ok) == (int(sel_gold[0]), int(ok_gold[0]))
        if not stall:
            assert cyc == projection_cycles(s, M, W)


def test_route_cycle_formulas():
    """The closed forms with W and r (docs/rtl.md) equal the per-phase sums."""
    from hrn_hw.rtl.normaliser import normaliser_cycles
    from hrn_hw.rtl.projection import projection_cycles

    for s in (1, 16, 300, 2800):
        for W in (1, 3, 8, 300):
            for k in (20, 48):
                for r in (1, 3, 4):
                    assert normaliser_cycles(s, k, W, r) == \
                        2 * ceil(s / W) + ceil((2 * k + 1) / r) + ceil((k + 1) / r) + 10
            for units in (1, 5):
                assert projection_cycles(s, units, W) == ceil(s / W) + units + 10
