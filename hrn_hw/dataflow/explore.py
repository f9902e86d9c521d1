"""`hrn-hw sweep OUT SWEEP.yaml`: design-space exploration of the simulator on Dask.

A sweep file names the architecture, the fixed settings and the axes to vary; every point of
the axes' product is simulated (one `hrn_hw.sweep.run_sweep` task per point, on a local Dask
cluster or `--scheduler ADDRESS`), and DIR gets sweep.json, sweep.csv and sweep.png
(throughput against latency, the Pareto front marked). Example:

    arch: fpga-pipelined          # built-in name or YAML file (or an axis)
    samples: 20000                # stream length (cycling through the golden vectors)
    settings: {fifo_depth: 4}     # fixed overrides of the architecture's settings
    axes:                         # each a list; the sweep is their product
      in_flight: [1, 2, 4, 8]
      replicas: [{}, {unit1: 2}, {unit1: 2, hash: 2}]
"""

from __future__ import annotations

import csv
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from hrn_hw.dataflow import arch as archs
from hrn_hw.dataflow import workload
from hrn_hw.sweep import read_yaml
from hrn_hw.errors import HrnError
from hrn_hw.export.atomic import OutputKind, check_target, staged_directory

FORMAT = "hrn-hw/sweep"
SWEEP = OutputKind("sweep", "sweep.json", FORMAT, HrnError)
KEYS = ("arch", "samples", "arrival", "seed", "optimise", "core_budget", "settings", "axes")
POINT_AXES = ("arch", "optimise", "core_budget", "arrival")     # axes that are not architecture settings
COLUMNS = ("samples_per_cycle", "samples_per_s", "interval_cycles", "latency_median", "latency_p99",
           "bottleneck", "utilisation", "bound_cycles", "fifo_bits")


def read_sweep(path: Path) -> dict:
    """The sweep file, checked: known keys, axes as non-empty lists."""
    raw = read_yaml(path)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise HrnError(f"{path}: unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(KEYS)})")
    axes = raw.get("axes") or {}
    if not isinstance(axes, dict) or not axes or any(not isinstance(v, list) or not v for v in axes.values()):
        raise HrnError(f"{path}: axes must map each varied setting to a non-empty list")
    if not isinstance(raw.get("settings") or {}, dict):
        raise HrnError(f"{path}: settings must be a mapping of architecture settings")
    return raw


def points_of(export_dir: Path, sweep: dict) -> list[dict]:
    """One dict per design point (the export, the fixed options, this point's axis values);
    every point's architecture is validated here, before any work."""
    from hrn_hw.sweep import grid

    points = []
    for values in grid(**sweep["axes"]):
        point = {"export": str(export_dir), "arch": sweep.get("arch", "fpga-pipelined"),
                 "samples": sweep.get("samples"), "arrival": sweep.get("arrival", "back-to-back"),
                 "seed": int(sweep.get("seed", 0)), "optimise": bool(sweep.get("optimise", False)),
                 "core_budget": sweep.get("core_budget"), "settings": dict(sweep.get("settings") or {}),
                 "values": values}
        for key, value in values.items():
            if key in POINT_AXES:
                point[key] = value
            else:
                point["settings"][key] = value
        point_arch(point)
        workload.parse_arrival(point["arrival"])
        points.append(point)
    return points


def point_arch(point: dict) -> archs.Arch:
    from hrn_hw.dataflow.fpga import resolve_arch

    arch = resolve_arch(archs.load(point["arch"]), Path(point["export"]))
    return arch.with_(**point["settings"]) if point["settings"] else arch


def run_point(point: dict) -> dict:
    """Simulate one design point (a Dask task): its summary row."""
    from hrn_hw.dataflow import simulate as sim
    from hrn_hw.verify import load_model

    req = sim.Request(export_dir=Path(point["export"]), arch=point["arch"], samples=point["samples"],
                      arrival=point["arrival"], seed=point["seed"], optimise=point["optimise"],
                      core_budget=point["core_budget"], progress=False, plots=False)
    ev = sim.evaluate(req, load_model(req.export_dir), point_arch(point))
    res, gain = ev.results, ev.gain
    busiest = res["bottleneck"]
    return {"values": point["values"], "samples": res["samples"],
            "samples_per_cycle": res["throughput"]["samples_per_cycle"],
            "samples_per_s": res["throughput"]["samples_per_s"], "clock_mhz": res["clock_mhz"],
            "interval_cycles": res["throughput"]["interval_cycles"],
            "latency_median": res["latency_cycles"]["median"], "latency_p99": res["latency_cycles"]["p99"],
            "bottleneck": busiest["pool"] if busiest["limit"] == "engine" else busiest["limit"],
            "utilisation": busiest["utilisation"], "bound_cycles": busiest["bound"]["cycles"],
            "fifo_bits": res["memory_bits"]["fifos"],
            "throughput_gain": None if gain is None else gain["throughput_gain"]}


def pareto(rows: list[dict]) -> list[int]:
    """Indices of the rows no other row beats in both throughput and median latency."""
    keep = []
    for i, a in enumerate(rows):
        if not any(b["samples_per_cycle"] >= a["samples_per_cycle"] and b["latency_median"] <= a["latency_median"]
                   and (b["samples_per_cycle"], b["latency_median"]) != (a["samples_per_cycle"], a["latency_median"])
                   for b in rows):
            keep.append(i)
    return keep


def explore(export_dir: Path, sweep_file: Path, out: Path | None = None, force: bool = False,
            scheduler: str | None = None, workers: int | None = None) -> tuple[dict, Path]:
    """Run a sweep; returns (sweep.json's dictionary, the directory written)."""
    from hrn_hw.sweep import run_sweep
    from hrn_hw.verify import load_model

    sweep = read_sweep(sweep_file)
    load_model(Path(export_dir))
    out = Path(out) if out is not None else Path(export_dir) / "sweep" / Path(sweep_file).stem
    check_target(out, force, SWEEP)
    points = points_of(Path(export_dir), sweep)
    print(f"{len(points)} design points on {scheduler or 'a local Dask cluster'}", file=sys.stderr, flush=True)
    rows = run_sweep(run_point, points, scheduler=scheduler, workers=workers, desc="design points")
    front = pareto(rows)
    doc = {"format": FORMAT, "version": 1,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "export": str(export_dir), "sweep_file": str(sweep_file), "sweep": sweep,
           "scheduler": scheduler or "LocalCluster", "rows": rows, "pareto": front,
           "best_throughput": int(np.argmax([r["samples_per_cycle"] for r in rows]))}
    with staged_directory(out, force, SWEEP) as stage:
        (stage / "sweep.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        write_csv(stage / "sweep.csv", rows)
        plot_sweep(rows, front, stage / "sweep.png", f"{Path(sweep_file).name} on {Path(export_dir).name}")
    return doc, out


def write_csv(path: Path, rows: list[dict]) -> None:
    axes = list(rows[0]["values"])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(axes + list(COLUMNS))
        for r in rows:
            w.writerow([json.dumps(r["values"][a]) if isinstance(r["values"][a], (dict, list)) else r["values"][a]
                        for a in axes] + [r[c] for c in COLUMNS])


def label(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in values.items())


def plot_sweep(rows: list[dict], front: list[int], path: Path, title: str) -> Path:
    """Throughput (samples per 1,000 cycles) against median latency, one dot per point."""
    from hrn_hw.dataflow.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = [r["latency_median"] for r in rows]
    y = [1000 * r["samples_per_cycle"] for r in rows]
    ax.scatter(x, y, s=18, color="C0", label="design point")
    ax.scatter([x[i] for i in front], [y[i] for i in front], s=40, facecolor="none", edgecolor="C3",
               label="Pareto front")
    for i in front:
        ax.annotate(label(rows[i]["values"]), (x[i], y[i]), fontsize=6, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("median latency (cycles)")
    ax.set_ylabel("samples per 1,000 cycles")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def format_rows(doc: dict) -> str:
    """The printed table: one line per point, best throughput first."""
    rows = sorted(range(len(doc["rows"])), key=lambda i: -doc["rows"][i]["samples_per_cycle"])
    lines = [f"{'point':<48} {'samples/kcycle':>14} {'interval':>9} {'latency p50':>11}  bottleneck"]
    for i in rows:
        r = doc["rows"][i]
        mark = "*" if i in doc["pareto"] else " "
        lines.append(f"{mark}{label(r['values'])[:47]:<47} {1000 * r['samples_per_cycle']:>14.3f} "
                     f"{r['interval_cycles']:>9.1f} {r['latency_median']:>11.0f}  {r['bottleneck']}")
    lines.append("* on the Pareto front (throughput against median latency)")
    return "\n".join(lines)
