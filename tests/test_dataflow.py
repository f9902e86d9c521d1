"""The dataflow simulator on a real export (the fixture model of sim/build/_fixture, trained and
exported once): the validation ladder of docs/design.md §6 (rung (a): the `rtl` architecture equals
the cycle model on every sample; conservation; no server above full use; Little's law), the
graphs, the command line and its refusals."""

from __future__ import annotations

import json
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

from hrn_hw.cli import main
from hrn_hw.dataflow import arch as archs
from hrn_hw.dataflow import fpga, graph, results, workload
from hrn_hw.dataflow.native import run
from hrn_hw.export.ir import QuantModel
from hrn_hw.rtl import latency
from hrn_hw.rtl.knobs import RtlKnobs

KNOBS = (RtlKnobs(), RtlKnobs(words=1, pixel_lanes=1, conv_lanes=4, head_lanes=2, root_bits=1),
         RtlKnobs(words=4, pixel_lanes=2, head_lanes=7, root_bits=3))


@pytest.fixture(scope="module")
def export_dir() -> Path:
    from simlib import small_export

    return small_export()


@pytest.fixture(scope="module")
def qm(export_dir) -> QuantModel:
    return QuantModel.load(export_dir)


@pytest.fixture(scope="module")
def golden(export_dir, qm) -> workload.Workload:
    return workload.from_golden(export_dir, qm)


def every_route(qm) -> workload.Workload:
    """Every route the export can take (each ordered choice of distinct initialised units up to
    depth d, the empty route included), once per task."""
    init = [u.index for u in qm.units if u.initialised]
    rows = [[]] + [list(p) for k in range(1, qm.d + 1) for p in permutations(init, k)]
    routes = np.array([r + [-1] * (qm.d - len(r)) for r in rows for _ in qm.heads], dtype=np.int64)
    tasks = np.array([t for _ in rows for t in range(len(qm.heads))], dtype=np.int64)
    return workload.Workload(routes, tasks, "every route")


def simulate(qm, work, arch, knobs, trace=0, arrival=None):
    arrival = np.zeros(len(work), dtype=np.int64) if arrival is None else arrival
    mapped = fpga.map_fpga(qm, work, arch, knobs, arrival, trace)
    out = run(mapped.problem)
    return mapped, out, results.summarise(mapped, out, arch.clock_mhz)


# ---- rung (a): the rtl architecture is the cycle model, sample by sample ------------------

@pytest.mark.parametrize("knobs", KNOBS, ids=["default", "one-word", "w4"])
def test_rtl_architecture_equals_the_cycle_model_on_every_sample(qm, golden, knobs):
    arch = archs.load("rtl")
    for work in (golden, every_route(qm)):
        _, out, res = simulate(qm, work, arch, knobs)
        model = latency.sample_cycles(qm, work.routes, knobs, work.tasks)
        assert np.array_equal(out.done - out.admit, model)
        # one sample at a time: each is admitted the cycle the previous one's last logit left
        assert np.array_equal(out.admit[1:], out.done[:-1]) and out.admit[0] == 0
        assert res["checks"]["max_utilisation"] <= 1


def test_pipelined_with_one_sample_in_flight_is_the_sum_of_its_engines(qm, golden):
    arch = archs.load("fpga-pipelined").with_(in_flight=1)
    work = every_route(qm)
    _, out, _ = simulate(qm, work, arch, KNOBS[0])
    expect = [sum(c for _, _, c in latency.pipelined_ops(qm, r, int(t), KNOBS[0])) for r, t in zip(work.routes, work.tasks)]
    assert np.array_equal(out.done - out.admit, expect)


# ---- rung (c) and (d): conservation, order, full use, Little's law -------------------------

def pipelined_cases():
    return [dict(in_flight=4), dict(in_flight=6, replicas={"unit1": 2, "hash": 2}),
            dict(in_flight=5, fifo_depth=1), dict(in_flight=3, fifo_depth={"hash": 2, "normaliser": 1})]


@pytest.mark.parametrize("settings", pipelined_cases(), ids=["k4", "replicas", "fifo1", "fifo-mixed"])
@pytest.mark.parametrize("arrival", ["back-to-back", "poisson:0.002"])
def test_every_sample_leaves_once_after_its_steps_in_order(qm, golden, settings, arrival):
    arch = archs.load("fpga-pipelined").with_(**settings)
    work = golden.repeat(300)
    times = workload.arrivals(*workload.parse_arrival(arrival), len(work), seed=3)
    mapped, out, res = simulate(qm, work, arch, KNOBS[0], trace=len(work), arrival=times)
    pb, trace = mapped.problem, out.trace
    assert len(trace) == sum(pb.chain_start[c + 1] - pb.chain_start[c] for c in pb.sample_class)
    for i in range(len(work)):
        rows = trace[trace[:, 0] == i]
        c = pb.sample_class[i]
        lo = pb.chain_start[c]
        assert rows[:, 1].tolist() == list(range(pb.chain_start[c + 1] - lo))     # every job once, in order
        lead = pb.job_lead[lo:lo + len(rows)]
        assert (rows[1:, 3] >= rows[:-1, 3] + lead[:-1]).all()                    # after its predecessor
        assert rows[0, 3] >= out.admit[i] >= times[i] and rows[-1, 4] == out.done[i]
        convs = [mapped.pools[pb.job_pool[lo + j]] for j in range(len(rows)) if mapped.job_labels[c][j] == "conv"]
        units = [u for u in work.routes[i] if u >= 0]
        assert convs == [f"unit{u}" for u in units[:-1]]                          # the route's units, in order
    for server in range(pb.num_servers):                                          # one job at a time
        rows = trace[trace[:, 2] == server]
        rows = rows[np.argsort(rows[:, 3], kind="stable")]
        assert (rows[1:, 3] >= rows[:-1, 5]).all() and (rows[:, 5] >= rows[:, 4]).all()
    assert res["checks"]["every_sample_left_once"] and res["checks"]["max_utilisation"] <= 1
    assert out.inflight_area == int((out.done - out.admit).sum())                 # Little's law, exactly
    assert res["checks"]["little_law_relative_error"] < 0.01
    if settings.get("fifo_depth") is not None:
        depth = settings["fifo_depth"]
        for q in res["pools"]:
            bound = depth.get(q["name"]) if isinstance(depth, dict) else depth
            assert bound is None or q["max_waiting"] <= bound


def test_more_samples_in_flight_never_lower_the_throughput(qm, golden):
    arch = archs.load("fpga-pipelined")
    rates = [simulate(qm, golden, arch.with_(in_flight=k), KNOBS[0])[2]["throughput"]["samples_per_cycle"]
             for k in (1, 2, 4, 8)]
    assert rates == sorted(rates) and rates[-1] > 2 * rates[0]
    bound = simulate(qm, golden, arch.with_(in_flight=16), KNOBS[0])[2]["bottleneck"]["bound"]["cycles"]
    assert 1 / rates[-1] >= bound - 1e-9                                          # never beats the engine bound


# ---- graphs ----------------------------------------------------------------------------------

def test_dataflow_graph_carries_the_rtl_formulas(qm):
    g = graph.dataflow_graph(qm, KNOBS[0])
    for unit in range(qm.num_units):
        calls = [c for c in qm.reachable if c["unit"] == unit]
        if calls:
            assert sorted(g.nodes[f"unit{unit}"]["cycles"].values()) == sorted(
                latency.conv_call_cycles(qm, unit, i, KNOBS[0]) for i in range(len(calls)))
    assert {"hash", "normaliser", "projection", "residue", "head"} <= set(g.nodes)
    assert g.has_edge("normaliser", "residue") and g.has_edge("residue", "head")


def test_transition_graph_counts_every_sample(golden):
    g = graph.transition_graph(golden)
    out_of_input = sum(d["weight"] for _, _, d in g.out_edges("input", data=True))
    into_head = sum(d["weight"] for _, _, d in g.in_edges("head", data=True))
    assert out_of_input == into_head == len(golden)


# ---- the command line ---------------------------------------------------------------------

def test_simulate_writes_results_and_plots(export_dir, tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", str(export_dir), "--in-flight", "3", "-o", str(out)]) == 0
    doc = json.loads((out / "simulate.json").read_text())
    assert doc["format"] == "hrn-hw/simulate" and doc["results"]["samples"] == doc["workload"]["samples"]
    assert [p["in_flight"] for p in doc["in_flight_curve"]] == list(range(1, 9))
    assert {"utilisation.png", "latency.png", "in_flight.png", "gantt.png"} <= {p.name for p in out.iterdir()}
    assert "samples/cycle" in capsys.readouterr().out
    assert main(["simulate", str(export_dir), "-o", str(out)]) == 2                  # exists: needs --force
    assert main(["simulate", str(export_dir), "--arch", "rtl", "-o", str(out), "--force", "--no-plots",
                 "--samples", "50", "--arrival", "poisson:0.0005"]) == 0
    doc = json.loads((out / "simulate.json").read_text())
    assert doc["architecture"]["kind"] == "rtl" and doc["results"]["samples"] == 50
    assert not (out / "gantt.png").exists()


def test_images_runs_the_golden_model_on_test_images(export_dir, qm, tmp_path):
    """--images N [--task T]: the routes are the golden model's on those test images."""
    from hrn_hw import golden
    from hrn_hw.scenarios import load_tasks, scenario_tasks

    out = tmp_path / "img"
    assert main(["simulate", str(export_dir), "--images", "12", "--task", "1", "--arch", "rtl", "-o", str(out),
                 "--no-plots"]) == 0
    doc = json.loads((out / "simulate.json").read_text())
    task = load_tasks([scenario_tasks(qm.source["scenario"])[1]])[0]
    routes = golden.run(qm, task.test_x[:12], np.ones(12, dtype=np.int64)).routes
    assert doc["workload"]["samples"] == 12 and "task 1" in doc["workload"]["source"]
    expect = latency.sample_cycles(qm, routes, fpga.resolve_knobs(archs.load("rtl"), export_dir)[0], np.ones(12))
    assert doc["results"]["latency_cycles"]["max"] == expect.max() and doc["results"]["latency_cycles"]["min"] == expect.min()
    assert main(["simulate", str(export_dir), "--images", "4", "--task", "9", "-o", str(out), "--force"]) == 2


def test_manycore_optimise_reports_the_simulated_gain(export_dir, tmp_path):
    out = tmp_path / "mesh"
    assert main(["simulate", str(export_dir), "--arch", "manycore", "--optimise", "--samples", "400", "-o", str(out),
                 "--no-plots"]) == 0
    doc = json.loads((out / "simulate.json").read_text())
    gain = doc["placement_gain"]
    assert gain["throughput_gain"] == pytest.approx(gain["optimised"]["samples_per_cycle"]
                                                    / gain["default"]["samples_per_cycle"])
    assert gain["optimised"]["samples_per_cycle"] == doc["results"]["throughput"]["samples_per_cycle"]
    assert gain["objective"]["objective_after"] <= gain["objective"]["objective_before"]
    links = [q for q in doc["results"]["pools"] if q["name"].startswith("link(")]
    assert len(links) == 4 * 8 * 7 and all(q["utilisation"] <= 1 for q in doc["results"]["pools"])


def bad_arch(tmp_path, text: str) -> str:
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--arch", "ARCH:kind: fpga-pipelined\nsize: 3\n"], "unknown key(s) size"),
    (["--arch", "ARCH:kind: fpga-pipelined\nin_flight: 0\n"], "in_flight must be an integer >= 1"),
    (["--arch", "ARCH:kind: rtl\nclock_mhz: -5\n"], "clock_mhz must be a finite number > 0"),
    (["--arch", "ARCH:kind: fpga-pipelined\nfifo_depth: 0\n"], "fifo_depth must be an integer >= 1"),
    (["--arch", "ARCH:kind: fpga-pipelined\nreplicas: {unit9: 2}\n"], "replicas.unit9: no such engine"),
    (["--arch", "ARCH:kind: fpga-pipelined\nreplicas: {unit1: -1}\n"], "must be an integer >= 1"),
    (["--arch", "ARCH:kind: gpu\n"], "kind must be one of"),
    (["--arch", "ARCH:[1, 2"], "not a YAML file"),
    (["--arch", "no-such-arch"], "no such file"),
    (["--arrival", "poisson:-1"], "samples per cycle > 0"),
    (["--arrival", "bursty"], "expected back-to-back or poisson:RATE"),
    (["--arch", "rtl", "--in-flight", "2"], "one sample at a time"),
    (["--optimise"], "needs a manycore architecture"),
    (["--task", "0"], "--task needs --images"),
    (["--arch", "ARCH:kind: fpga-pipelined\nin_flight: 8\nfifo_depth: 1\nreplicas: {unit0: 1}\n"
      "knobs: {words: 3}\n"], "power of two"),
    (["--arch", "ARCH:kind: manycore\ncore: {sram_bytes: 2048}\n"], "does not fit"),
    (["--arch", "ARCH:kind: manycore\nmesh: [2, 2]\n"], "gets no core"),
    (["--arch", "ARCH:kind: manycore\nplacement: {unit7: [1, 1]}\n"], "no such unit"),
    (["--arch", "ARCH:kind: manycore\nreplicas: {unit7: 2}\n"], "replicas.unit7: no such unit"),
    (["--arch", "ARCH:kind: manycore\nnoc: {link_bytes_per_cycle: 0}\n"], "must be an integer >= 1"),
    (["--arch", "ARCH:kind: manycore\nio: [9, 9]\n"], "outside the 8 x 8 mesh"),
    (["--arch", "ARCH:kind: manycore\ncore: {macs: 3}\n"], "unknown key(s) macs"),
    (["--arch", "manycore", "--core-budget", "4"], "--core-budget applies to --optimise"),
])
def test_bad_input_one_line_exit_2_nothing_written(export_dir, tmp_path, capsys, args, message):
    args = [bad_arch(tmp_path, a[5:]) if a.startswith("ARCH:") else a for a in args]
    out = tmp_path / "sim"
    assert main(["simulate", str(export_dir), "-o", str(out), *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[")]   # progress
    assert len(lines) == 1 and lines[0].startswith("hrn-hw: error:") and message in lines[0]
    assert not out.exists()


def test_missing_or_foreign_export(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nothing")]) == 2
    assert "no such export directory" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text('{"format": "something else"}')
    (tmp_path / "foreign" / "weights.npz").write_bytes(b"PK\x03\x04 not really")
    assert main(["simulate", str(tmp_path / "foreign"), "-o", str(tmp_path / "sim")]) == 2
    assert "not an hrn-hw export" in capsys.readouterr().err
    assert not (tmp_path / "sim").exists()


def test_force_refuses_a_directory_that_is_not_a_simulation(export_dir, tmp_path, capsys):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["simulate", str(export_dir), "-o", str(other), "--force"]) == 2
    assert "is not an hrn-hw simulation" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"


def test_a_deadlocking_mapping_is_a_clear_error(qm):
    """A ring of one-frame FIFOs (hash -> normaliser -> ... -> unit -> hash) with far more
    samples in flight than it holds stops: a one-line error naming the full FIFOs; with few
    samples in flight the same FIFOs work."""
    from hrn_hw.dataflow.simulate import simulate_mapped
    from hrn_hw.errors import HrnError

    work = every_route(qm).repeat(400)
    for k, stops in ((64, True), (2, False)):
        arch = archs.load("fpga-pipelined").with_(in_flight=k, fifo_depth=1)
        mapped = fpga.map_fpga(qm, work, arch, KNOBS[0], np.zeros(len(work), dtype=np.int64))
        if stops:
            with pytest.raises(HrnError, match="never finished.*hash") as info:
                simulate_mapped(mapped, arch, "auto")
            assert "\n" not in str(info.value)
        else:
            assert simulate_mapped(mapped, arch, "auto")[1]["checks"]["every_sample_left_once"]
