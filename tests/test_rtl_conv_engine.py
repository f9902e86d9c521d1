"""Conv engine RTL on Verilator (cocotb 2.x): bit-exact with hrn_hw.golden.run_unit on every
reachable call of a real unit and on a synthetic unit with maxpool, cycles equal to
hrn_hw.rtl.conv_engine.conv_engine_cycles. Runs the sim/test_conv_engine.py testbenches, so
`make test` includes them (the small export they need is trained once under sim/build/)."""

from __future__ import annotations


import pytest

pytest.importorskip("cocotb_tools.runner")


def test_conv_engine_rtl():
    import test_conv_engine

    test_conv_engine.test_conv_engine()


def test_conv_engine_pool_rtl():
    import test_conv_engine

    test_conv_engine.test_conv_engine_pool()


def test_conv_engine_cycle_formula():
    """The closed form in the docstring equals the per-phase sum; default lanes = out_channels."""
    import test_conv_engine

    from hrn_hw.rtl.conv_engine import call_geometry, conv_engine_cycles

    _, unit, calls = test_conv_engine.synthetic_unit()
    for call in calls:
        for lanes in (None, 1, 2, 5):
            g = call_geometry(unit, call, lanes)
            assert g["G"] == (1 if lanes is None else -(-5 // lanes))
            assert conv_engine_cycles(unit, call, lanes) == (
                g["C"] * g["H"] * g["W"] + g["G"] * g["Ho"] * g["Wo"] * 2 * 9 + 5 * g["Ph"] * g["Pw"] * 4 + 5)
