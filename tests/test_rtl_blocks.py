"""RTL blocks on Verilator (cocotb 2.x), bit-exact against the golden primitives, with cycle
counts equal to hrn_hw.rtl.cycles: the sim/ testbenches, run from `make test`.

Each call generates the block's Verilog from Amaranth, builds it with Verilator under
sim/build/ (incremental after the first run) and runs its cocotb tests; a failing cocotb test
fails the pytest test. `make sim` runs the same testbenches directly.

`make test` builds the blocks at the top level's default of W = 8 words per beat (plus a small
one-word normaliser that saturates); `make sim` runs every testbench, the one-word builds
included (their tests are the sim/ modules' own test functions).
"""

from __future__ import annotations


import pytest

pytest.importorskip("cocotb_tools.runner")


def test_hash_unit_words_rtl():
    """The hash unit at W = 8 words per beat (s = 300: the last output beat is part full)."""
    import test_hash_unit

    test_hash_unit.test_hash_unit(8)


def test_normaliser_rtl():
    import test_normaliser

    test_normaliser.test_normaliser(words=(8,))


def test_normaliser_saturating_rtl():
    import test_normaliser

    test_normaliser.test_normaliser_saturating()


def test_projection_rtl():
    import test_projection

    test_projection.test_projection(words=(8,))


def test_cycle_formulas():
    """The closed forms documented in docs/rtl.md equal the per-phase sums."""
    from hrn_hw.rtl.cycles import hash_unit_cycles, normaliser_cycles, projection_cycles

    for n in (1, 300, 784, 1024):
        for s in (1, 300, 2800):
            assert hash_unit_cycles(n, s) == n + s + 15
            for w in (1, 4, 8):
                assert hash_unit_cycles(n, s, w) == -(-n // w) + -(-s // w) + 15
    for s in (16, 300, 2800):
        for k in (20, 48):
            assert normaliser_cycles(s, k) == 2 * s + 3 * k + 12
        for units in (1, 5, 9):
            assert projection_cycles(s, units) == s + units + 10
