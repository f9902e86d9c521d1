"""The pipelined top level (hrn_hw/rtl/pipelined.py, RTL knob in_flight >= 2) on Verilator with
the native testbench's stream mode: the fixture model's golden vectors and the extreme inputs as
one back-to-back stream (several samples in flight, samples overtaking each other, replicated
engines) give embedding, route and logits bit-identical to the golden model, a second stream
under random input gaps and output stalls too, and every sample's measured first-pixel and
last-logit cycles equal the throughput model (`hrn_hw.dataflow.stream.stream_schedule`), which
is the dataflow simulator's fpga-pipelined architecture at the same knobs (`hrn-hw simulate`
gives the same completion cycles). Builds (g++ -O0) are cached under sim/build/."""

from __future__ import annotations

import numpy as np
import pytest

from hrn_hw.errors import HrnError
from hrn_hw.rtl.knobs import RtlKnobs

KNOBS = RtlKnobs(in_flight=4, replicas="hash=2,normaliser=2,unit0=2")


def _stream(qm, cases, name: str, knobs: RtlKnobs, stalled: int):
    from hrn_hw.rtl import native_sim
    from hrn_hw.rtl.emit import write_rtl
    from simlib import BUILD_DIR

    rtl = BUILD_DIR / name / "rtl"
    summary = write_rtl(qm, rtl, knobs)
    assert summary["knobs"]["in_flight"] == knobs.in_flight and summary["ports"]["out_id"] == 16
    return native_sim.simulate(rtl, qm, cases, stalled=stalled, build_root=rtl.parent / "build", opt="-O0")


def _check_stream(cases, out):
    import test_top

    test_top.check_top(cases, out)                     # bits (the stalled stream too) and cycles
    free = ~out["stalled"]
    assert np.array_equal(out["start"][free], cases["model_start"])
    assert np.array_equal(out["end"][free], cases["model_end"])
    order = np.argsort(cases["model_end"], kind="stable")
    assert not np.array_equal(order, np.arange(len(order))), "no sample overtook another: a weak stream"


def test_pipelined_stream_is_bit_exact_and_cycle_exact():
    import test_top
    from hrn_hw.dataflow import simulate as sim
    from hrn_hw.dataflow.stream import stream_schedule
    from hrn_hw.dataflow.workload import Workload
    from hrn_hw.export.ir import QuantModel
    from simlib import small_export

    qm = QuantModel.load(small_export())
    cases = test_top.fixture_cases(qm, 40, KNOBS)
    out = _stream(qm, cases, "pipelined_fixture", KNOBS, stalled=12)
    _check_stream(cases, out)
    # the simulator's built-in fpga-pipelined architecture on this RTL's knobs (rtl/rtl.json)
    from hrn_hw.dataflow.fpga import map_fpga
    from hrn_hw.dataflow.native import run
    from simlib import BUILD_DIR

    arch = sim.load_arch(sim.Request(export_dir=BUILD_DIR / "pipelined_fixture", progress=False, plots=False))
    assert arch["in_flight"] == KNOBS.in_flight and arch["replicas"] == dict(KNOBS.replicas)
    work = Workload(cases["route"], cases["tasks"], "fixture")
    mapped = map_fpga(qm, work, arch, KNOBS, np.zeros(len(work), dtype=np.int64))
    done = run(mapped.problem).done
    from hrn_hw.rtl.latency import HANDOFF

    assert np.array_equal(done, cases["model_end"] + HANDOFF + 2)
    assert np.array_equal(done, stream_schedule(qm, cases["route"], cases["tasks"], KNOBS)["done"])


def test_pipelined_stream_with_early_stops_and_runouts():
    """Samples that stop on tau_d or run out of initialised units leave early and overtake."""
    import test_top
    from hrn_hw.export.ir import QuantModel
    from simlib import small_export

    base = QuantModel.load(small_export())
    z = np.load(small_export() / "golden" / "vectors.npz")
    qm = test_top.routing_variant(base, [2, 3], 0.5, z["pixels"][:50])
    knobs = RtlKnobs(in_flight=3, replicas={})
    cases = test_top.fixture_cases(qm, 30, knobs)
    out = _stream(qm, cases, "pipelined_variant", knobs, stalled=8)
    _check_stream(cases, out)


@pytest.mark.parametrize("bad, match", [
    ({"in_flight": 1, "replicas": "hash=2"}, "needs in_flight >= 2"),
    ({"in_flight": 4, "replicas": "residue=2"}, "cannot be replicated"),
    ({"in_flight": 4, "replicas": "head=2"}, "cannot be replicated"),
    ({"in_flight": 4, "replicas": "input=2"}, "cannot be replicated"),
    ({"in_flight": 4, "replicas": "hash=0"}, "positive integer"),
    ({"in_flight": 4, "replicas": "hash"}, "engine=copies"),
])
def test_bad_pipelining_knobs_are_one_line_errors(bad, match):
    with pytest.raises(HrnError, match=match) as exc:
        RtlKnobs(**bad)
    assert "\n" not in str(exc.value)


def test_knobs_round_trip_with_replicas():
    k = RtlKnobs(in_flight=8, replicas={"unit3": 2, "hash": 2, "normaliser": 1})
    assert k.replicas == (("hash", 2), ("unit3", 2)) and k.copies("hash") == 2 and k.copies("head") == 1
    assert RtlKnobs.from_dict(k.to_dict()) == k and k.to_dict()["replicas"] == {"hash": 2, "unit3": 2}
