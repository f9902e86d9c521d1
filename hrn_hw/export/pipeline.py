"""`hrn-hw export`: checkpoint -> quantised model, golden vectors, HLS project, report (atomic)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

import hrn_hw
from hrn_hw import golden
from hrn_hw.checkpoint import load_checkpoint
from hrn_hw.errors import ConfigError
from hrn_hw.export import vectors
from hrn_hw.export.atomic import check_target, staged_directory
from hrn_hw.export.evaluate import compare_task
from hrn_hw.export.precision import Precision
from hrn_hw.export.quantize import quantize_model
from hrn_hw.export.report import write_report
from hrn_hw.fixedpoint.fmt import SatCounter
from hrn_hw.hls.csim import require_tool
from hrn_hw.hls.render import render_project
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.rtl.latency import resolve_knobs
from hrn_hw.rtl.report import rtl_report_data
from hrn_hw.scenarios import load_tasks


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def calibration_images(tasks: list, total: int) -> list[tuple[int, np.ndarray]]:
    """`total` training images spread evenly over the tasks (a fixed random pick per task)."""
    per = math.ceil(total / len(tasks))
    out = []
    for i, t in enumerate(tasks):
        pick = np.random.default_rng([0, i]).permutation(len(t.train_x))[:per]
        out.append((i, t.train_x[np.sort(pick)]))
    return out


def export(model_path: str | Path, out: str | Path, force: bool = False, precision_file: str | None = None,
           calib: int = 512, golden_per_task: int = 200, data_dir: str | None = None,
           eval_limit: int | None = None, quiet: bool = False, rtl: bool = True,
           knobs: RtlKnobs | None = None, synth: bool = False) -> dict:
    """Run the whole export; returns the summary written to OUT/export.json. `rtl` writes
    OUT/rtl (with `knobs`), `synth` adds Yosys resource counts of it to the report."""
    t0 = time.perf_counter()
    out = Path(out)
    check_target(out, force)
    require_tool("g++", "CXX")          # the project's C simulation needs it: fail before any work
    try:
        precision = Precision.from_file(precision_file)
    except UnicodeDecodeError:
        raise ConfigError(f"{precision_file}: not valid YAML/JSON (not UTF-8 text)") from None
    _say(f"[1/6] loading {model_path}", quiet)
    model, specs, _ = load_checkpoint(model_path)
    torch.set_num_threads(1)
    tasks = load_tasks(specs, data_dir)
    _say(f"[2/6] calibrating on {calib} training images and quantising", quiet)
    sat = SatCounter()
    qm, _ranges = quantize_model(model, specs, calibration_images(tasks, calib), precision, sat,
                                 source={"checkpoint": str(model_path), "config": model.cfg.name,
                                         "scenario": model.cfg.scenario, "profile": model.cfg.profile})
    _say(f"[3/6] float vs fixed on the test sets of {len(tasks)} tasks", quiet)
    rows = []
    for i, t in enumerate(tasks):
        x, y = t.test_x[:eval_limit], t.test_y[:eval_limit]
        row = compare_task(model, qm, i, x, y, sat)
        row["name"] = t.spec.name
        rows.append(row)
        _say(f"      {t.spec.name}: float {100 * row['float_accuracy']:.2f}%  fixed "
             f"{100 * row['fixed_accuracy']:.2f}%  routes agree {100 * row['route_agreement']:.2f}%", quiet)
    _say(f"[4/6] golden vectors: {golden_per_task} test images per task", quiet)
    gx = np.concatenate([t.test_x[:golden_per_task] for t in tasks])
    gy = np.concatenate([t.test_y[:golden_per_task] for t in tasks])
    gt = np.concatenate([np.full(min(golden_per_task, len(t.test_x)), i) for i, t in enumerate(tasks)])
    gres = golden.run(qm, gx, gt)
    knobs = resolve_knobs(qm, knobs or RtlKnobs(), gres.routes, gt)       # replicas "auto" from the golden routes
    summary = {
        "model": str(model_path), "config": model.cfg.name, "profile": model.cfg.profile,
        "switches": model.cfg.switches, "version": hrn_hw.__version__,
        "tasks": rows, "saturations": dict(sat), "golden_samples": int(len(gx)),
        "golden_per_task": golden_per_task, "calibration_images": calib,
        "eval_note": "full test sets" if eval_limit is None else f"first {eval_limit} per task",
        "precision_unused": precision.unused(),
    }
    with staged_directory(out, force) as stage:
        _say("[5/6] rendering the HLS project", quiet)
        qm.save(stage)
        vectors.save(stage / "golden", gx, gt, gy, gres)
        render_project(qm, stage / "hls")
        if rtl:
            _say(f"[6/6] generating the RTL ({knobs.to_dict()}){' and synthesising it with Yosys' if synth else ''}",
                 quiet)
            from hrn_hw.dataflow.stream import stream_schedule

            summary["rtl"] = rtl_report_data(qm, stage / "rtl", knobs, gres.routes, gt, synth, stream_schedule)
        summary["export_seconds"] = time.perf_counter() - t0
        write_report(stage / "report.md", qm, summary)
        (stage / "export.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
