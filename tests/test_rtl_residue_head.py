"""Residue + embedding accumulator and head engine on Verilator (cocotb 2.x), bit-exact against
the golden model on a small Pairwise-MNIST export, cycles equal to their formulas: the
sim/test_residue.py and sim/test_head.py testbenches, run from `make test`.

The first run trains and exports the fixture model under sim/build/_fixture/ (cached).
"""

from __future__ import annotations


import pytest

pytest.importorskip("cocotb_tools.runner")


def test_residue_rtl():
    import test_residue

    test_residue.test_residue()


def test_head_rtl():
    import test_head

    test_head.test_head()


def test_residue_head_cycle_formulas():
    """The closed forms documented in docs/rtl.md equal the per-phase sums."""
    from hrn_hw.rtl.head import head_cycles
    from hrn_hw.rtl.residue import embedding_cycles, residue_cycles

    for s in (16, 300, 2800):
        assert residue_cycles(s) == s + 5
        assert embedding_cycles(s) == s + 2
    for lanes in (1, 4, 10, 60):
        sizes = [(300, 60), (60, 10), (10, 2)]
        closed = 300 + sum(-(-o // lanes) * i + o + 2 for i, o in sizes) + 1 + 2
        assert head_cycles(300, sizes, 2, lanes) == closed
    assert head_cycles(300, [(300, 60), (60, 10), (10, 2)], 2) == 2251
