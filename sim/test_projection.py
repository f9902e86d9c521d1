"""Projection comparator (hrn_hw/rtl/projection.py) on Verilator: coefficients, energies and
the selected unit bit-exact with the golden `hrn_hw.fixedpoint.ops.project` / `select`, cycles
equal to `hrn_hw.rtl.cycles.projection_cycles`.

Two builds of M = 5 units, m = 3, s = 300: one word of h per beat, and W = 8 words per beat
(300 is not a multiple of 8: the last beat is half padding, driven with garbage here to check
that it is ignored).
"""

from __future__ import annotations

import numpy as np

import cocotb

from simlib import pack_beats, params, record, run_dut, start, stream_frame, to_unsigned

P = params()


def fmts():
    from hrn_hw.fixedpoint.fmt import Fmt

    return Fmt.from_dict(P["h_fmt"]), Fmt.from_dict(P["b_fmt"]), Fmt.from_dict(P["c_fmt"])


def words(value: int, n: int, width: int, signed: bool = True) -> np.ndarray:
    out = []
    for k in range(n):
        w = (value >> (k * width)) & ((1 << width) - 1)
        if signed and w >> (width - 1):
            w -= 1 << width
        out.append(w)
    return np.array(out, dtype=np.int64)


def beats_of(h):
    """h [s] as beats of W words; the last beat's padding past s holds the format's limits
    (the block must ignore it)."""
    W, s = P.get("words", 1), P["s"]
    hf, _, _ = fmts()
    pad = [hf.qmax if k % 2 else hf.qmin for k in range(-s % W)]
    return pack_beats(list(h) + pad, W, hf.width)


async def project_frame(dut, h, allowed, rng=None, in_gap=0.0, out_stall=0.0):
    """Stream h with the `allowed` mask; return (coef [M, m], energy [M], sel, ok, cycles)."""
    M, m = P["M"], P["m"]
    _, _, cf = fmts()
    dut.allowed.value = int(sum(1 << u for u in range(M) if allowed[u]))

    def result():
        coef = words(to_unsigned(dut.coef), M * m, cf.width).reshape(M, m)
        energy = words(to_unsigned(dut.energy), M, P["e_width"], signed=False)
        return coef, energy, to_unsigned(dut.sel), bool(to_unsigned(dut.ok))

    (res,), cyc = await stream_frame(dut, beats_of(h), 1, rng, in_gap, out_stall, out_last=False, read_output=result)
    return (*res, cyc)


def check(dut, name, h, allowed, coef, energy, sel, ok, cyc=None):
    from hrn_hw.fixedpoint import ops
    from hrn_hw.rtl.cycles import projection_cycles

    hf, bf, cf = fmts()
    bases = np.load(P["bases"])
    c_gold, e_gold = ops.project(np.asarray(h, dtype=np.int64)[None], hf, bases, bf, cf)
    sel_gold, ok_gold = ops.select(e_gold, np.asarray(allowed, dtype=bool)[None])
    assert np.array_equal(coef, c_gold[0]), f"{name}: coefficients differ\nrtl {coef}\ngolden {c_gold[0]}"
    assert np.array_equal(energy, e_gold[0]), f"{name}: energies differ: rtl {energy} golden {e_gold[0]}"
    assert ok == bool(ok_gold[0]), f"{name}: ok {ok} != golden {ok_gold[0]}"
    assert sel == int(sel_gold[0]), f"{name}: selected {sel} != golden {sel_gold[0]}"
    model = projection_cycles(P["s"], P["M"], P.get("words", 1)) if cyc is not None else None
    record(name, True, cyc, model)
    if cyc is not None:
        assert cyc == model, f"{name}: cycles {cyc} != model {model}"
    dut._log.info("%s: sel %d ok %d energies %s bit-exact%s", name, sel, ok, [int(e) for e in energy],
                  f", {cyc} cycles" if cyc else "")


def cases(rng):
    """[(name, h, allowed)]."""
    M, s = P["M"], P["s"]
    hf, _, _ = fmts()
    everyone = [True] * M
    unit = np.zeros(s, dtype=np.int64)
    unit[3] = 1 << hf.frac                      # h = e_3: picks up column 3 of every basis
    out = [
        ("h = 0 (all energies 0: lowest allowed index)", np.zeros(s, dtype=np.int64), [False] + [True] * (M - 1)),
        ("no allowed unit", rng.integers(-2000, 2000, s), [False] * M),
        ("h = e_3", unit, everyone),
        ("h = e_{s-1} (in the last beat)", np.eye(1, s, s - 1, dtype=np.int64)[0] << hf.frac, everyone),
        ("h at the format limits", np.where(rng.random(s) < 0.5, hf.qmax, hf.qmin), everyone),
        ("tie between units 1 and 3 (identical bases, 0 2 4 masked)", rng.integers(-3000, 3000, s),
         [u in (1, 3) for u in range(M)]),
    ]
    for t in range(6):
        mask = rng.random(M) < 0.7
        out.append((f"random h, random mask {t}", rng.integers(-3000, 3001, s), list(map(bool, mask))))
    return out


@cocotb.test()
async def project_cases(dut):
    """Random h and masks, h = 0, no allowed unit, a tie, h at the format limits."""
    await start(dut)
    rng = np.random.default_rng(5)
    for name, h, allowed in cases(rng):
        coef, energy, sel, ok, cyc = await project_frame(dut, h, allowed)
        check(dut, name, h, allowed, coef, energy, sel, ok, cyc)


@cocotb.test()
async def project_backpressure(dut):
    """Input gaps and output stalls at random: still bit-exact."""
    await start(dut)
    rng = np.random.default_rng(6)
    for name, h, allowed in cases(rng)[::2]:
        coef, energy, sel, ok, _ = await project_frame(dut, h, allowed, rng, 0.3, 0.5)
        check(dut, f"stalled: {name}", h, allowed, coef, energy, sel, ok)


def make_bases(M, m, s, b_fmt, seed=4):
    """Random bases [M, m, s] in b_fmt with extremes: a zero row (a missing vector), rows at the
    format limits, and units 1 and 3 identical (an exact energy tie)."""
    rng = np.random.default_rng(seed)
    bases = rng.integers(-(1 << (b_fmt.width - 4)), 1 << (b_fmt.width - 4), (M, m, s))
    bases[0, 2] = 0
    bases[2, 0] = np.where(rng.random(s) < 0.5, b_fmt.qmax, b_fmt.qmin)
    bases[3] = bases[1]
    return bases


def _run(build_name, words=1):
    from hrn_hw.fixedpoint.fmt import Fmt
    from hrn_hw.rtl.projection import ProjectionComparator
    from simlib import BUILD_DIR

    M, m, s = 5, 3, 300
    hf, bf, cf = Fmt(16, 14), Fmt(16, 15), Fmt(16, 14)
    bases = make_bases(M, m, s, bf)
    path = BUILD_DIR / build_name / "bases.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, bases)
    dut = ProjectionComparator(bases, hf, bf, cf, words=words)
    run_dut(dut, "projection", "test_projection",
            {"M": M, "m": m, "s": s, "h_fmt": hf.to_dict(), "b_fmt": bf.to_dict(), "c_fmt": cf.to_dict(),
             "e_width": dut.e_width, "bases": str(path), "words": words}, build_name=build_name)


def test_projection(words=(1, 8)):
    """pytest: M = 5 units, m = 3, s = 300 with the default formats (h s16/14, basis s16/15,
    coefficient s16/14), at one word of h per beat, then at W = 8 words per beat (`words`
    picks which of the two)."""
    if 1 in words:
        _run("projection")
    if 8 in words:
        _run("projection_w8", words=8)
