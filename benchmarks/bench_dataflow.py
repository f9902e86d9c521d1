"""Benchmark of the dataflow simulator on the Pairwise-MNIST paper-config model (docs/dataflow.md).

    python benchmarks/bench_dataflow.py [--model runs/paper/model.pt] [--export runs/paper/export]
                                        [--out results/bench_dataflow.json] [--workers 2]

Trains the model (`hrn-hw train --scenario pairwise-mnist`) and exports it (`hrn-hw export`)
when they are absent, then measures:

1. rung (a): the `rtl` architecture against the cycle model on every golden vector;
2. `rtl`, and `fpga-pipelined` with 1 .. 8 samples in flight, then with the bounding engine
   replicated step by step (the simulator's own bottleneck report picks the engine);
3. 4x4, 8x8 and 16x16 meshes, default and `--optimise`d placement (gain as simulated);
4. the simulator's speed on one core: simulated samples per wall second on rtl,
   fpga-pipelined and an 8x8 mesh at 10k, 100k and 1M samples, and a 1M-sample 8x8 run of
   the whole command; how a Dask sweep's wall time grows from one worker to every core.

Design points run through `hrn_hw.sweep.run_sweep`. Results go to --out (JSON) and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrn_hw.bench import machine_record  # noqa: E402
from hrn_hw.dataflow import arch as archs  # noqa: E402
from hrn_hw.dataflow import simulate as sim  # noqa: E402
from hrn_hw.sweep import run_sweep  # noqa: E402

HRN = str(Path(sys.executable).parent / "hrn-hw")
MESHES = ((4, 4), (8, 8), (16, 16))
SPEED_SAMPLES = (10_000, 100_000, 1_000_000)


def ensure_export(model: Path, export: Path) -> None:
    """Train and export the paper-config model where they are missing."""
    if not model.is_file():
        print(f"training {model} (Pairwise-MNIST, paper config)", file=sys.stderr, flush=True)
        subprocess.run([HRN, "train", "--scenario", "pairwise-mnist", "--out", str(model),
                        "--results", str(model.with_name("results.json"))], check=True)
    if not (export / "manifest.json").is_file():
        print(f"exporting {model} to {export}", file=sys.stderr, flush=True)
        subprocess.run([HRN, "export", str(model), "-o", str(export), "--force"], check=True)


def evaluate(export: str, arch: archs.Arch, samples: int | None = None, optimise: bool = False,
             engine: str = "auto") -> tuple[sim.Evaluation, float]:
    """One simulation in this process; (evaluation, wall seconds of mapping + simulating)."""
    from hrn_hw.verify import load_model

    req = sim.Request(export_dir=Path(export), samples=samples, optimise=optimise, engine=engine, progress=False)
    qm = load_model(req.export_dir)
    t0 = time.perf_counter()
    ev = sim.evaluate(req, qm, arch)
    return ev, time.perf_counter() - t0


def row(ev: sim.Evaluation) -> dict:
    res = ev.results
    return {"samples_per_cycle": res["throughput"]["samples_per_cycle"],
            "interval_cycles": res["throughput"]["interval_cycles"],
            "median_interval_cycles": res["throughput"]["median_interval_cycles"],
            "latency_cycles": res["latency_cycles"], "bottleneck": res["bottleneck"]["pool"],
            "bottleneck_kind": res["bottleneck"]["limit"], "utilisation": res["bottleneck"]["utilisation"],
            "bound_cycles": res["bottleneck"]["bound"]["cycles"], "bound_engine": res["bottleneck"]["bound"]["pool"],
            "memory_bits": res["memory_bits"], "gain": ev.gain}


def design_point(point: dict) -> dict:
    """A Dask task: simulate one architecture (given as settings over a built-in one)."""
    arch = archs.load(point["arch"]).with_(**point["settings"]) if point["settings"] else archs.load(point["arch"])
    ev, seconds = evaluate(point["export"], arch, samples=point.get("samples"), optimise=point.get("optimise", False))
    return {**point, **row(ev), "seconds": seconds}


def sweep_scaling(export: str, workers: int, samples: int = 300_000) -> list[dict]:
    """Wall time of one Dask sweep (fpga-pipelined, K = 1 .. 8, `samples` each) on 1 .. `workers`
    local workers."""
    points = [{"export": export, "arch": "fpga-pipelined", "settings": {"in_flight": k}, "samples": samples}
              for k in range(1, 9)]
    out = []
    for n in range(1, workers + 1):
        t0 = time.perf_counter()
        run_sweep(design_point, points, workers=n, desc=f"sweep on {n} worker(s)")
        out.append({"workers": n, "points": len(points), "samples_per_point": samples,
                    "seconds": time.perf_counter() - t0})
    return out


def rung_a(export: str) -> dict:
    from hrn_hw.rtl.latency import sample_cycles
    from hrn_hw.verify import load_model

    ev, _ = evaluate(export, archs.load("rtl"))
    knobs = ev.mapped.info["knobs"]
    model = sample_cycles(load_model(Path(export)), ev.work.routes, knobs, ev.work.tasks)
    simulated = ev.outcome.done - ev.outcome.admit
    return {"samples": len(simulated), "mismatches": int((model != simulated).sum()), "knobs": knobs}


def replication_ladder(export: str, in_flight: int, steps: int) -> list[dict]:
    """Replicate the engine that bounds the interval, one copy at a time (what the simulator
    reports as the bound), at `in_flight` samples in flight."""
    replicas, out = {}, []
    for _ in range(steps + 1):
        arch = archs.load("fpga-pipelined").with_(in_flight=in_flight, replicas=dict(replicas))
        ev, _ = evaluate(export, arch)
        out.append({"replicas": dict(replicas), **row(ev)})
        engine = ev.results["bottleneck"]["bound"]["pool"]
        replicas[engine] = replicas.get(engine, 1) + 1
    return out


def speed(export: str) -> list[dict]:
    """Simulated samples per wall second (mapping + engine, this process, one core)."""
    cases = [("rtl", archs.load("rtl")), ("fpga-pipelined K=8", archs.load("fpga-pipelined").with_(in_flight=8)),
             ("manycore 8x8", archs.load("manycore"))]
    out = []
    for name, arch in cases:
        for n in SPEED_SAMPLES:
            _, seconds = evaluate(export, arch, samples=n)
            out.append({"architecture": name, "samples": n, "seconds": seconds, "samples_per_s": n / seconds})
            print(f"  speed {name:>20} {n:>9,} samples: {seconds:7.2f} s, {n / seconds:>10,.0f} samples/s",
                  file=sys.stderr, flush=True)
    return out


def whole_command(export: str, samples: int) -> dict:
    """`hrn-hw simulate --arch manycore --samples N` end to end (wall seconds)."""
    t0 = time.perf_counter()
    subprocess.run([HRN, "simulate", export, "--arch", "manycore", "--samples", str(samples), "--no-plots",
                    "-o", str(Path(export) / "simulate" / "bench-1M"), "--force"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"samples": samples, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/paper/model.pt")
    ap.add_argument("--export", default="runs/paper/export")
    ap.add_argument("--out", default="results/bench_dataflow.json")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="Dask workers of the design-point sweeps")
    args = ap.parse_args()
    model, export = Path(args.model), Path(args.export)
    ensure_export(model, export)
    export = str(export)
    report = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "model": str(model), "export": export,
              "machine": machine_record(ROOT)}
    print("[1/5] rung (a): rtl against the cycle model", file=sys.stderr, flush=True)
    report["rung_a"] = rung_a(export)
    print("[2/5] FPGA design points", file=sys.stderr, flush=True)
    fpga = [{"export": export, "arch": "rtl", "settings": {}}] + [
        {"export": export, "arch": "fpga-pipelined", "settings": {"in_flight": k}} for k in range(1, 9)]
    report["fpga"] = run_sweep(design_point, fpga, workers=args.workers, desc="FPGA points")
    report["sweep_scaling"] = sweep_scaling(export, args.workers)
    report["replication"] = replication_ladder(export, 16, 6)
    print("[3/5] meshes, default and optimised placement", file=sys.stderr, flush=True)
    meshes = [{"export": export, "arch": "manycore", "settings": {"mesh": list(m)}, "optimise": opt}
              for m in MESHES for opt in (False, True)]
    meshes += [{"export": export, "arch": "manycore", "settings": {"mesh": [8, 8], "in_flight": k}, "optimise": True}
               for k in (24, 32)]
    report["manycore"] = run_sweep(design_point, meshes, workers=args.workers, desc="mesh points")
    print("[4/5] simulator speed (one core)", file=sys.stderr, flush=True)
    report["speed"] = speed(export)
    report["one_million_8x8_command"] = whole_command(export, 1_000_000)
    print("[5/5] writing", args.out, file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(summary(report))


def summary(r: dict) -> str:
    lines = [f"rung (a): {r['rung_a']['mismatches']} mismatches over {r['rung_a']['samples']} golden vectors"]
    for p in r["fpga"]:
        name = p["arch"] + (f" K={p['settings']['in_flight']}" if p["settings"] else "")
        lines.append(f"{name:>22}: interval {p['interval_cycles']:8.1f} (median {p['median_interval_cycles']:6.0f}), "
                     f"latency p50 {p['latency_cycles']['median']:7.0f}, bottleneck {p['bottleneck']} "
                     f"({p['bottleneck_kind']}), bound {p['bound_cycles']:.1f} ({p['bound_engine']})")
    for p in r["replication"]:
        lines.append(f"  K=16 replicas {json.dumps(p['replicas']):<40} interval {p['interval_cycles']:7.1f} "
                     f"bound {p['bound_cycles']:6.1f} ({p['bound_engine']})")
    for p in r["manycore"]:
        gain = p["gain"]
        extra = f", gain x{gain['throughput_gain']:.3f} throughput, x{gain['median_latency_ratio']:.3f} latency" \
            if gain else ""
        k = p["settings"].get("in_flight", 16)
        lines.append(f"  mesh {p['settings']['mesh']} K={k} {'optimised' if p['optimise'] else 'default':>9}: interval "
                     f"{p['interval_cycles']:8.1f}, latency p50 {p['latency_cycles']['median']:7.0f}, "
                     f"bottleneck {p['bottleneck']}{extra}")
    for s in r["speed"]:
        lines.append(f"  speed {s['architecture']:>20} {s['samples']:>9,}: {s['samples_per_s']:>10,.0f} samples/s")
    lines.append(f"  1M samples on 8x8, whole command: {r['one_million_8x8_command']['seconds']:.1f} s")
    for p in r["sweep_scaling"]:
        lines.append(f"  Dask sweep of {p['points']} points x {p['samples_per_point']:,} samples on {p['workers']} "
                     f"worker(s): {p['seconds']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
