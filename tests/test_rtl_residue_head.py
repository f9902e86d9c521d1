"""Residue + embedding accumulator and head engine on Verilator (cocotb 2.x), bit-exact against
the golden model on a small Pairwise-MNIST export, cycles equal to their formulas: the
sim/test_residue.py and sim/test_head.py testbenches, run from `make test`, the residue at one word per
beat and both at W = 8 (the one-word head runs under `make sim`) (s = 300 and the head's 60- and 10-neuron layers are not multiples of 8).

The first run trains and exports the fixture model under sim/build/_fixture/ (cached).
"""

from __future__ import annotations


import pytest

pytest.importorskip("cocotb_tools.runner")

@pytest.mark.parametrize("words", [1, 8])
def test_residue_rtl(words):
    import test_residue

    test_residue.test_residue(words)


@pytest.mark.parametrize("words", [8])
def test_head_rtl(words):
    import test_head

    test_head.test_head(words)


def test_residue_head_cycle_formulas():
    """The closed forms documented in docs/rtl.md equal the per-phase sums."""
    from hrn_hw.rtl.head import head_cycles
    from hrn_hw.rtl.residue import embedding_cycles, residue_cycles

    def ceil(a, b):
        return -(-a // b)

    for s in (16, 300, 2800):
        assert residue_cycles(s) == s + 9
        assert embedding_cycles(s) == s + 2
        for w in (1, 4, 7, 8, 300):
            assert residue_cycles(s, w) == ceil(s, w) + 9
            assert embedding_cycles(s, w) == ceil(s, w) + 2
    sizes = [(300, 60), (60, 10), (10, 2)]
    for lanes in (1, 4, 10, 60):
        closed = 300 + sum(-(-o // lanes) * (i + 1) + o + 10 for i, o in sizes) + 2 + 2
        assert head_cycles(300, sizes, 2, lanes) == closed
        for w in (1, 4, 7, 8, 16):
            # write-back: per group of lanes neurons, the distinct output rows of w words it touches
            rows = sum(len({n // w for n in range(lo, min(lo + lanes, o))}) for _, o in sizes
                       for lo in range(0, o, lanes))
            closed = ceil(300, w) + sum(ceil(o, lanes) * (ceil(i, w) + 1) + 10 for i, o in sizes) + rows + 2 + 2
            assert head_cycles(300, sizes, 2, lanes, w) == closed
    assert head_cycles(300, sizes, 2) == 2284
    assert head_cycles(300, sizes, 2, 10, 8) == 333      # 38 load, 238 MAC + 8 flush, 15 write-back, 30 drain, 2 + 2 out
    assert residue_cycles(300, 8) == 47 and embedding_cycles(300, 8) == 40
