"""The top level on Verilator (cocotb 2.x): embedding, route and logits bit-exact with the
golden model on whole samples, and the cycle model equal to the measured cycles of every
sample: the sim/test_top.py testbench, run from `make test` on the fixture model's routing
variant (50 images, extremes, early stops, running out of units; its first run trains and
exports the fixture model under sim/build/_fixture/, cached). `make sim` also runs the
unmodified fixture model (sim/test_top.py::test_top) and the demo model's export."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cocotb_tools.runner")


def test_top_stop_and_runout_rtl():
    import test_top

    test_top.test_top_stop_and_runout()


def test_top_preset_rtl():
    import test_top

    test_top.test_top_preset()


def test_crossbar_states_follow_the_reachable_calls():
    """Every reachable call is a crossbar entry, and a route's map states have the shapes the
    unit chain produces."""
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.export.shapes import unit_out_shape
    from hrn_hw.rtl.crossbar import routing_table, state_sequence
    from simlib import small_export

    qm = QuantModel.load(small_export())
    table = routing_table(qm)
    assert len(table.transitions) == len(qm.reachable)
    shape = tuple(qm.input_shape)
    states = state_sequence(table, [1, 2, 0])
    for unit, st in zip([1, 2], states[1:]):
        shape = unit_out_shape(qm.units[unit], shape)
        assert table.states[st].shape == shape and table.states[st].hash_index == unit + 1
    assert len(states) == 3 and np.prod(table.states[0].shape) == 784
