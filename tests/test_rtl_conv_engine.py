"""Conv engine RTL on Verilator (cocotb 2.x): bit-exact with hrn_hw.golden.run_unit on every
reachable call of a real unit and on a synthetic unit with maxpool, cycles equal to
hrn_hw.rtl.conv_engine.conv_engine_cycles. Runs the sim/test_conv_engine.py testbenches, so
`make test` includes them (the small export they need is trained once under sim/build/).

Builds: the synthetic unit at 8 words per beat with 5 pixel lanes (with the small-plane
calls; `make sim` also runs it at one word per beat and one pixel per cycle); the real unit at 8 words per
beat with 10 pixel lanes on 4 output-channel lanes (fewer lanes keep its build small; the
top-level tests run the real units at the defaults); the synthetic unit with LeakyReLU then
avgpool 3/1 at 2 words per beat with 3 pixel lanes."""

from __future__ import annotations

import pytest

pytest.importorskip("cocotb_tools.runner")


def test_conv_engine_rtl():
    import test_conv_engine

    test_conv_engine.test_conv_engine(lanes=4, words=8, pixel_lanes=10, build="conv_engine_w8p10")


def test_conv_engine_pool_words_rtl():
    import test_conv_engine

    test_conv_engine.test_conv_engine_pool(words=8, pixel_lanes=5, build="conv_engine_pool_w8p5")


def test_conv_engine_avgpool_rtl():
    """LeakyReLU then avgpool 3/1 (divisor 9) at 2 words per beat, 3 pixel lanes: bit-exact
    with the golden model, cycles == conv_engine_cycles."""
    import test_conv_engine

    test_conv_engine.test_conv_engine_avgpool(words=2, pixel_lanes=3, build="conv_engine_avgpool_w2p3")


def _load_cycles(n: int, s: int, words: int) -> int:
    """LOAD cycles walked word by word: a cycle folds a run of consecutive words that ends at a
    beat's end, a channel group's end (folded address back to 0) or the frame's end."""
    cycles, j = 0, 0
    while j < n:
        run = min(words - j % words, s - j % s, n - j)
        j += run
        cycles += 1
    return cycles


def test_conv_engine_cycle_formula():
    """The closed form equals the per-phase sum; default lanes = out_channels; LOAD equals a
    word-by-word walk of the runs."""
    import test_conv_engine

    from hrn_hw.rtl.conv_engine import call_geometry, conv_engine_cycles

    _, unit, calls = test_conv_engine.synthetic_unit()
    for call in calls + test_conv_engine.SMALL_PLANE_CALLS:
        for lanes in (None, 1, 2, 5):
            g = call_geometry(unit, call, lanes)
            assert g["G"] == (1 if lanes is None else -(-5 // lanes))
            assert conv_engine_cycles(unit, call, lanes) == (
                g["C"] * g["H"] * g["W"] + g["G"] * g["Ho"] * g["Wo"] * 2 * 9 + 5 * g["Ph"] * g["Pw"] * 4 + 14)
            for words in (1, 2, 8):
                for pixels in (1, 3, 10, 40):
                    load = _load_cycles(g["n_in"], 2 * g["H"] * g["W"], words)
                    assert conv_engine_cycles(unit, call, lanes, words, pixels) == (
                        load + g["G"] * -(-g["Ho"] * g["Wo"] // pixels) * max(18, pixels)
                        + -(-5 * g["Ph"] * g["Pw"] // words) * 4 + pixels + 13)


def test_conv_engine_paper_image_call():
    """The paper model's image call (1x28x28 -> 16x10x10, 5x5 stride 3 pad 2, 16 lanes):
    4898 cycles at W = P = 1, 100 + 250 + 18 + 200 + 3 at W = 8, P = 10."""
    import numpy as np

    from hrn_hw.export.ir import ActQ, ConvQ, UnitQ
    from hrn_hw.fixedpoint.fmt import Fmt
    from hrn_hw.rtl.conv_engine import conv_engine_cycles, conv_engine_phases

    conv = ConvQ(16, 5, 3, 2, np.zeros((16, 1, 5, 5), int), Fmt(16, 14), np.zeros(16, int), Fmt(16, 14), Fmt(24, 21))
    unit = UnitQ(0, 1, [conv, ActQ(6554, 16)], True)
    call = {"in_shape": [1, 28, 28], "in_frac": 8, "in_width": 9}
    assert conv_engine_cycles(unit, call) == 4898
    assert conv_engine_phases(unit, call, None, 8, 10) == {
        "load": 100, "compute": 250, "drain": 18, "out": 200, "out_pipeline": 3}
    unit_call = {"in_shape": [16, 10, 10], "in_frac": 21, "in_width": 24}
    assert conv_engine_cycles(unit, unit_call) == 2270
    # 16 groups of 100 words: the odd ones end inside a beat of 8 words
    assert conv_engine_phases(unit, unit_call, None, 8, 10)["load"] == 200 + 8 + 2
