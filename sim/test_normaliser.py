"""Normaliser (hrn_hw/rtl/normaliser.py) on Verilator: h, E and inv bit-exact with the golden
`hrn_hw.fixedpoint.ops.normalise` / `inv_sqrt`, cycles equal to
`hrn_hw.rtl.cycles.normaliser_cycles`.

Three builds: the paper config (s = 300, K = 48, h s16 frac 14, rnd) at one word per beat
and at W = 8 words per beat with r = 4 root bits per cycle (300 is not a multiple of 8: the
last beat is half padding), and a small one whose h format saturates and truncates (s = 16,
K = 20, h s8 frac 10, trn).
"""

from __future__ import annotations

import numpy as np

import cocotb

from simlib import pack_beats, params, record, run_dut, start, stream_frame, to_unsigned, unpack_beat

P = params()
E_MAX = (1 << 63) - 1          # the export refuses energies beyond 63 bits


def h_fmt():
    from hrn_hw.fixedpoint.fmt import Fmt

    return Fmt.from_dict(P["h_fmt"])


def words():
    return P.get("words", 1)


async def norm_frame(dut, phi, rng=None, in_gap=0.0, out_stall=0.0):
    """Stream phi [s] in beats of W words, the last beat's padding past s holding -2^31 and
    2^31 - 1 (the block must ignore it); return (h [s], E, inv, cycles from the first input
    handshake to the last output handshake, inclusive). The padding past s of the last output
    beat must be zero."""
    seen = {}
    s, W, hw = P["s"], words(), h_fmt().width
    junk = [(1 << 31) - 1 if k % 2 else -(1 << 31) for k in range(-s % W)]

    def latch(_):
        if to_unsigned(dut.out_valid) and not seen:     # E and inv of the frame being streamed out
            seen["energy"], seen["inv"] = to_unsigned(dut.energy), to_unsigned(dut.inv)

    out, cyc = await stream_frame(dut, pack_beats(list(phi) + junk, W, 32), -(-s // W), rng, in_gap, out_stall,
                                  on_cycle=latch, read_output=lambda: unpack_beat(to_unsigned(dut.out_data), W, hw))
    h = np.array(out, dtype=np.int64).reshape(-1)
    assert not h[s:].any(), f"h padding past s not zero: {h[s:]}"
    return h[:s], seen.get("energy"), seen.get("inv"), cyc


def check(dut, name, phi, h, energy, inv, cyc=None):
    from hrn_hw.fixedpoint import ops
    from hrn_hw.rtl.cycles import normaliser_cycles

    k, fmt = P["norm_k"], h_fmt()
    e_gold = sum(int(x) * int(x) for x in phi)
    assert energy == e_gold, f"{name}: E {energy} != golden {e_gold}"
    inv_gold = ops.inv_sqrt(e_gold, k) if e_gold else 0
    assert inv == inv_gold, f"{name}: inv {inv} != golden {inv_gold}"
    want = ops.normalise(np.asarray(phi, dtype=np.int64)[None], k, fmt)[0]
    bad = np.nonzero(h != want)[0]
    assert not len(bad), f"{name}: {len(bad)} of h differ, first {bad[0]}: rtl {h[bad[0]]} golden {want[bad[0]]}"
    sat = int(np.count_nonzero((want == fmt.qmax) | (want == fmt.qmin)))
    model = normaliser_cycles(P["s"], k, words(), P.get("root_bits", 1)) if cyc is not None else None
    record(name, True, cyc, model)
    if cyc is not None:
        assert cyc == model, f"{name}: cycles {cyc} != model {model}"
    dut._log.info("%s: E=%d inv=%d, %d of h at the format limits, bit-exact%s", name, energy, inv, sat,
                  f", {cyc} cycles" if cyc else "")
    return sat


def cases(rng):
    """[(name, phi)] within the contract (E < 2^63, |phi| < 2^31)."""
    s = P["s"]
    top = int(np.floor(np.sqrt(E_MAX / s)))
    one = np.zeros(s, dtype=np.int64)
    one[int(rng.integers(s))] = -(1 << 31)
    two = np.zeros(s, dtype=np.int64)
    two[[0, s - 1]] = [(1 << 31) - 1, -((1 << 31) - 1)]
    unit = np.zeros(s, dtype=np.int64)
    unit[s // 2] = 1
    last = np.zeros(s, dtype=np.int64)
    last[s - 1] = -1                            # in the last (padded) beat when W does not divide s
    full = np.full(s, top) * np.where(rng.random(s) < 0.5, 1, -1)
    assert int(np.sum(full * full)) >> 62 == 1  # E's top bit (2^62 of a 63-bit energy) set
    # E = 2^30 exactly with entries +-1: inv = 2^(K-15), so at K = 48 and frac 14 the products
    # of the +-1 entries sit exactly half an LSB from h's grid (round half up: 1 -> 1, -1 -> 0)
    tie = np.zeros(s, dtype=np.int64)
    tie[:11] = [1, -1, 1, -1, 1, -1, 1, -1, 32766, -362, 4]
    out = [
        ("E == 0", np.zeros(s, dtype=np.int64)),
        ("rounding ties (E = 2^30, entries +-1)", tie),
        ("E == 1", unit),
        ("E == 1, last entry -1", last),
        ("maximum energy (all entries at sqrt(2^63 / s), E >= 2^62)", full),
        ("one entry -2^31", one),
        ("two entries +-(2^31 - 1)", two),
        ("small ints", rng.integers(-3, 4, s)),
    ]
    for bits in (8, 12, 16, 20, 24):
        out.append((f"random |phi| < 2^{bits}", rng.integers(-(1 << bits), 1 << bits, s)))
    out.append(("sparse hash-like", np.where(rng.random(s) < 0.1, rng.integers(-2000, 2000, s), 0)))
    return out


@cocotb.test()
async def normalise_cases(dut):
    """Random phi of several magnitudes plus E == 0, E == 1, maximum energy, +-2^31 entries."""
    await start(dut)
    rng = np.random.default_rng(P.get("seed", 0))
    saturated = 0
    for name, phi in cases(rng):
        h, energy, inv, cyc = await norm_frame(dut, phi)
        saturated += check(dut, name, phi, h, energy, inv, cyc)
    if P.get("expect_saturation"):
        assert saturated > 0, "the saturating build never saturated"


@cocotb.test()
async def normalise_backpressure(dut):
    """Input gaps and output stalls at random, frames back to back: still bit-exact."""
    await start(dut)
    rng = np.random.default_rng(P.get("seed", 0) + 100)
    for t, (name, phi) in enumerate(cases(rng)[::2]):
        h, energy, inv, _ = await norm_frame(dut, phi, rng, in_gap=0.3, out_stall=0.4)
        check(dut, f"stalled: {name}", phi, h, energy, inv)


def _run(s, norm_k, fmt, build_name, seed, expect_saturation=False, words=1, root_bits=1):
    from hrn_hw.rtl import Normaliser

    dut = Normaliser(s=s, norm_k=norm_k, h_fmt=fmt, words=words, root_bits=root_bits)
    run_dut(dut, "normaliser", "test_normaliser",
            {"s": s, "norm_k": norm_k, "h_fmt": fmt.to_dict(), "seed": seed,
             "expect_saturation": expect_saturation, "words": words, "root_bits": root_bits},
            build_name=build_name)


def test_normaliser(words=(1, 8)):
    """pytest: the paper config's normaliser (s = 300, K = 48 for 63-bit energies, h s16 frac 14),
    at one word per beat, then at W = 8 words per beat with 4 root bits per cycle (`words`
    picks which of the two)."""
    from hrn_hw.fixedpoint.fmt import Fmt
    from hrn_hw.fixedpoint.ops import norm_shift

    fmt = Fmt(16, 14)
    if 1 in words:
        _run(300, norm_shift(63, fmt), fmt, "normaliser", 0)
    if 8 in words:
        _run(300, norm_shift(63, fmt), fmt, "normaliser_w8_r4", 2, words=8, root_bits=4)


def test_normaliser_saturating():
    """pytest: a small normaliser whose h format saturates (s8 frac 10) and truncates (trn)."""
    from hrn_hw.fixedpoint.fmt import Fmt

    _run(16, 20, Fmt(8, 10, True, "trn"), "normaliser_sat", 1, expect_saturation=True)
