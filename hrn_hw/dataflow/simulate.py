"""`hrn-hw simulate OUT`: a trained, exported HRN on a chip, from its real routes.

Loads the export, builds the workload (golden vectors, or the golden model on N test
images), maps it onto the architecture (the mappers are registered in `MAPPERS`), runs the
event engine, and writes DIR/simulate.json and the plots atomically (docs/dataflow.md).
"""

from __future__ import annotations

import datetime
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import hrn_hw
from hrn_hw.dataflow import arch as archs
from hrn_hw.dataflow import graph, plots, results, workload
from hrn_hw.dataflow.native import run as run_engine
from hrn_hw.errors import HrnError
from hrn_hw.export.atomic import OutputKind, check_target, staged_directory

FORMAT = "hrn-hw/simulate"
VERSION = 1
SIMULATION = OutputKind("simulation", "simulate.json", FORMAT, HrnError)
TRACE_SAMPLES = 12              # samples drawn in the Gantt chart
SWEEP_SAMPLES = 5000            # samples per point of the samples-in-flight curve (the workload's first)
SWEEP_IN_FLIGHT = (1, 2, 3, 4, 5, 6, 7, 8)


def _map_fpga(qm, work, arch, arrival, trace, ctx):
    from hrn_hw.dataflow.fpga import map_fpga, resolve_knobs

    knobs, note = resolve_knobs(arch, ctx.get("export_dir"))
    mapped = map_fpga(qm, work, arch, knobs, arrival, trace)
    mapped.info["knobs_note"] = note
    return mapped


def _map_manycore(qm, work, arch, arrival, trace, ctx):
    from hrn_hw.dataflow.manycore import map_manycore

    return map_manycore(qm, work, arch, arrival, trace, placement=ctx.get("placement"))


# One mapper per architecture kind: (qm, workload, arch, arrivals, trace samples, context) -> Mapped.
MAPPERS = {"rtl": _map_fpga, "fpga-pipelined": _map_fpga, "manycore": _map_manycore}


@dataclass
class Request:
    """What `hrn-hw simulate` was asked (the CLI's options)."""
    export_dir: Path
    arch: str = "fpga-pipelined"
    out: Path | None = None
    force: bool = False
    images: int | None = None
    task: int | None = None
    samples: int | None = None
    arrival: str = "back-to-back"
    seed: int = 0
    in_flight: int | None = None
    optimise: bool = False
    core_budget: int | None = None
    data_dir: str | None = None
    engine: str = "auto"
    plots: bool = True
    progress: bool = True


def _say(req: Request, msg: str) -> None:
    if req.progress:
        print(msg, file=sys.stderr, flush=True)


def default_dir(req: Request, arch_name: str) -> Path:
    """DIR when -o is not given: OUT/simulate/<architecture name>."""
    return Path(req.export_dir) / "simulate" / arch_name


def load_arch(req: Request) -> archs.Arch:
    """The architecture, with --in-flight applied (refused where it has no meaning)."""
    from hrn_hw.dataflow.fpga import resolve_arch

    arch = resolve_arch(archs.load(req.arch), req.export_dir)
    if req.in_flight is not None:
        if arch.kind == "rtl":
            raise HrnError("--in-flight: the rtl architecture holds one sample at a time (use fpga-pipelined)")
        arch = arch.with_(in_flight=req.in_flight)
    if req.core_budget is not None and not (req.optimise and arch.kind == "manycore"):
        raise HrnError("--core-budget applies to --optimise on a manycore architecture")
    if req.optimise and arch.kind != "manycore":
        raise HrnError(f"--optimise places units on a mesh: it needs a manycore architecture, not {arch.kind}")
    return arch


def load_workload(req: Request, qm) -> workload.Workload:
    """Golden vectors, or the golden model on --images N test images; cycled to --samples."""
    if req.task is not None and req.images is None:
        raise HrnError("--task needs --images N")
    if req.images is None:
        work = workload.from_golden(Path(req.export_dir), qm)
    else:
        work = workload.from_images(qm, req.images, req.task, req.data_dir)
    return work if req.samples is None else work.repeat(req.samples)


def simulate_mapped(mapped, arch, engine: str, progress: bool = False) -> tuple[object, dict]:
    """Run the engine on a Mapped (a progress bar on long runs with `progress`); (outcome, results)."""
    from hrn_hw.dataflow.engine import DeadlockError

    try:
        out = run_engine(mapped.problem, engine, progress)
    except DeadlockError as exc:
        full = ", ".join(mapped.pools[p] for p in exc.pools) or "some"
        raise HrnError(f"{arch.path}: the mapping deadlocks (samples never finished): they wait for room in "
                       f"the FIFOs before {full}; deepen those FIFOs or lower in_flight ({mapped.in_flight})") from None
    return out, results.summarise(mapped, out, arch.clock_mhz, arch["clock_note"])


def in_flight_sweep(req: Request, qm, work, arch, ctx) -> list[dict]:
    """Throughput and latency at 1 .. 8 samples in flight (and the architecture's own value),
    on the workload's first SWEEP_SAMPLES samples, back-to-back."""
    if arch.kind == "rtl":
        return []
    from tqdm import tqdm

    part = work if len(work) <= SWEEP_SAMPLES else workload.Workload(work.routes[:SWEEP_SAMPLES],
                                                                     work.tasks[:SWEEP_SAMPLES], work.source)
    points = []
    values = sorted(set(SWEEP_IN_FLIGHT) | {arch["in_flight"]})
    for k in tqdm(values, desc="samples in flight", disable=not req.progress, file=sys.stderr, leave=False):
        a = arch.with_(in_flight=k)
        mapped = MAPPERS[a.kind](qm, part, a, np.zeros(len(part), dtype=np.int64), 0, ctx)
        _, res = simulate_mapped(mapped, a, req.engine)
        points.append({"in_flight": k, "samples_per_cycle": res["throughput"]["samples_per_cycle"],
                       "interval_cycles": res["throughput"]["interval_cycles"],
                       "median_latency": res["latency_cycles"]["median"],
                       "bottleneck": res["bottleneck"]["pool"], "bound_cycles": res["bottleneck"]["bound"]["cycles"]})
    return points


def optimised(req: Request, qm, work, arch, arrival, ctx, baseline: dict) -> tuple[dict, dict]:
    """--optimise: the placement search's mapping, simulated; (context, gain report)."""
    from hrn_hw.dataflow.placement import optimise

    placement, report = optimise(qm, work, arch, core_budget=req.core_budget)
    ctx = {**ctx, "placement": placement}
    mapped = MAPPERS[arch.kind](qm, work, arch, arrival, 0, ctx)
    _, res = simulate_mapped(mapped, arch, req.engine)
    gain = {"objective": report,
            "default": {"samples_per_cycle": baseline["throughput"]["samples_per_cycle"],
                        "median_latency": baseline["latency_cycles"]["median"]},
            "optimised": {"samples_per_cycle": res["throughput"]["samples_per_cycle"],
                          "median_latency": res["latency_cycles"]["median"]},
            "throughput_gain": res["throughput"]["samples_per_cycle"] / baseline["throughput"]["samples_per_cycle"],
            "median_latency_ratio": res["latency_cycles"]["median"] / baseline["latency_cycles"]["median"],
            "note": "measured by simulating both mappings on the same workload"}
    return ctx, gain


@dataclass
class Evaluation:
    """One simulated mapping of a workload: what `simulate` writes and a sweep point keeps."""
    work: workload.Workload
    ctx: dict
    mapped: object
    outcome: object
    results: dict
    gain: dict | None


def evaluate(req: Request, qm, arch: archs.Arch, trace: int = 0) -> Evaluation:
    """Workload, mapping (optimised with --optimise) and simulation of one request."""
    work = load_workload(req, qm)
    arrival = workload.arrivals(*workload.parse_arrival(req.arrival), len(work), seed=req.seed)
    ctx = {"export_dir": Path(req.export_dir)}
    _say(req, f"[2/4] {arch.name}: mapping and simulating {len(work):,} samples")
    mapped = MAPPERS[arch.kind](qm, work, arch, arrival, trace, ctx)
    outcome, res = simulate_mapped(mapped, arch, req.engine, req.progress)
    gain = None
    if req.optimise:
        _say(req, "[2/4] --optimise: replicating and placing blocks, simulating the optimised mapping")
        ctx, gain = optimised(req, qm, work, arch, arrival, ctx, res)
        mapped = MAPPERS[arch.kind](qm, work, arch, arrival, trace, ctx)
        outcome, res = simulate_mapped(mapped, arch, req.engine, req.progress)
    return Evaluation(work, ctx, mapped, outcome, res, gain)


def simulate(req: Request) -> tuple[dict, Path]:
    """Run a simulation; returns (simulate.json's dictionary, the directory written)."""
    from hrn_hw.verify import load_model

    arch = load_arch(req)
    workload.parse_arrival(req.arrival)
    out = Path(req.out) if req.out is not None else default_dir(req, arch.name)
    qm = load_model(Path(req.export_dir))
    check_target(out, req.force, SIMULATION)
    _say(req, f"[1/4] workload: {'golden vectors' if req.images is None else f'{req.images} test images'}")
    ev = evaluate(req, qm, arch, TRACE_SAMPLES)
    _say(req, "[3/4] throughput against samples in flight")
    doc = document(req, qm, arch, ev, in_flight_sweep(req, qm, ev.work, arch, ev.ctx))
    _say(req, f"[4/4] writing {out}")
    with staged_directory(out, req.force, SIMULATION) as stage:
        (stage / "simulate.json").write_text(json.dumps(doc, indent=1) + "\n")
        if req.plots:
            write_plots(stage, doc, ev.mapped, ev.outcome, ev.work)
    return doc, out


def document(req: Request, qm, arch: archs.Arch, ev: Evaluation, curve: list) -> dict:
    """simulate.json's dictionary."""
    work = ev.work
    return {
        "format": FORMAT, "version": VERSION, "hrn_hw_version": hrn_hw.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "export": str(req.export_dir), "source": qm.source,
        "architecture": {"name": arch.name, "kind": arch.kind, "file": arch.path,
                         "settings": archs.plain(arch.data), **_jsonable(ev.mapped.info)},
        "workload": {"source": work.source, "samples": len(work), "arrival": req.arrival, "seed": req.seed,
                     "route_lengths": np.bincount(work.route_lengths(), minlength=qm.d + 1).tolist(),
                     "transitions": [[a, b, d["weight"]] for a, b, d in graph.transition_graph(work).edges(data=True)]},
        "results": ev.results,
        "in_flight_curve": curve,
        "placement_gain": ev.gain,
        "dataflow_graph": _graph_json(ev.mapped, ev.results, qm, arch),
    }


def _graph_json(mapped, res: dict, qm, arch) -> dict:
    """The architecture graph with utilisation, and (FPGA) the dataflow graph with its cycles."""
    import networkx as nx

    from hrn_hw.rtl.knobs import RtlKnobs

    doc = {"architecture": nx.node_link_data(graph.architecture_graph(mapped, res), edges="edges")}
    if arch.kind != "manycore":
        knobs = RtlKnobs.from_dict(mapped.info["knobs"])
        doc["dataflow"] = nx.node_link_data(graph.dataflow_graph(qm, knobs), edges="edges")
    return _jsonable(doc)


def _jsonable(value):
    """Tuples as lists, numpy scalars as Python numbers (for json.dumps)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_plots(stage: Path, doc: dict, mapped, outcome, work) -> None:
    """utilisation.png, latency.png, in_flight.png (not for rtl) and gantt.png."""
    res, name = doc["results"], doc["architecture"]["name"]
    info = doc["architecture"]
    plots.utilisation(res, info, stage / "utilisation.png", f"{name}: utilisation ({res['samples']:,} samples)")
    pb = mapped.problem
    plots.latency_histogram(outcome.done - outcome.admit, work.route_lengths(), stage / "latency.png",
                            f"{name}: latency per sample")
    if doc["in_flight_curve"]:
        plots.in_flight_curve(doc["in_flight_curve"], stage / "in_flight.png",
                              f"{name}: throughput and latency against samples in flight")
    if len(outcome.trace):
        plots.gantt(outcome.trace, mapped.servers, mapped.job_labels, pb.sample_class, stage / "gantt.png",
                    f"{name}: the first {pb.trace_samples} samples")


def format_summary(doc: dict, out: Path) -> str:
    """The lines `hrn-hw simulate` prints."""
    a = doc["architecture"]
    hosts = {}
    for block, cells in (a.get("placement") or {}).items():
        for r, c in cells:
            key = f"core({r},{c})"
            hosts[key] = f"{hosts[key]}+{block}" if key in hosts else block
    lines = [results.format_table(doc["results"], f"{a['name']} ({a['kind']}), {doc['workload']['samples']:,} samples "
                                                  f"of {doc['workload']['source']}", hosts)]
    gain = doc.get("placement_gain")
    if gain:
        lines.append(f"  --optimise   throughput x{gain['throughput_gain']:.3f}, median latency "
                     f"x{gain['median_latency_ratio']:.3f} against the default mapping (simulated)")
    lines.append(f"written to {out} (simulate.json, plots)")
    return "\n".join(lines)
