"""`hrn-hw sweep SPEC.yaml`: every run of a training sweep (hrn_hw.cl.sweep_spec) on Dask,
through the project's one runner (hrn_hw.sweep.run_sweep), resumable; then the summary and the
figures (docs/sweeps.md).

OUT/sweep.json marks OUT as a training sweep's folder. Each run trains in a worker into
OUT/<method>/<label>/seed-<seed>/ (model.pt, results.json, train.log); results.json is written
once, when the run has finished every task. A run whose results.json is finished and was made by
the same run (method, config, seed, epochs, limit) is skipped and its files kept; force=True
trains every run again. A run whose worker dies is retried once; a run that still fails is
listed in the summary (and `hrn-hw sweep` exits 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hrn_hw.cl.sweep_spec import Spec, identity, read_spec, same_training
from hrn_hw.cl.summary import check_run, summary_doc, timing, write_summary
from hrn_hw.errors import HrnError

FORMAT = "hrn-hw/train-sweep"
MARKER = "sweep.json"
RESULTS = "results.json"


@dataclass
class Outcome:
    """A finished sweep: summary.json's content, its folder and the files written there."""
    doc: dict
    out: Path
    written: list


def run_point(point: dict) -> dict:
    """Train one run into its folder (a Dask task, or in-process for a one-run sweep), on one
    thread as every worker; returns its process CPU and wall seconds."""
    import torch

    from hrn_hw.cl.metrics import summarise
    from hrn_hw.config import config_from_dict
    from hrn_hw.train import RunOptions, train, write_results

    torch.set_num_threads(1)
    cpu, wall = time.process_time(), time.perf_counter()
    folder = Path(point["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RESULTS).unlink(missing_ok=True)
    cfg = config_from_dict(point["config"], point["label"])
    opts = RunOptions(**run_options(point, cfg.scenario, RunOptions))
    with open(folder / "train.log", "w") as log, contextlib.redirect_stderr(log):
        results = train(cfg, opts, folder / "model.pt", None, log=lambda line: print(line, file=log, flush=True))
    cost = {"cpu_seconds": round(time.process_time() - cpu, 3), "wall_seconds": round(time.perf_counter() - wall, 3)}
    results.setdefault("method", point["method"])
    results["metrics"] = results.get("metrics") or summarise(results["accuracy_matrix"])
    results["sweep"] = {"label": point["label"], "run": identity(point), **cost}
    write_results(folder / RESULTS, results)
    return cost


def run_options(point: dict, scenario: str, options_type) -> dict:
    """RunOptions' fields of a point (the method only where this hrn-hw's train has methods)."""
    fields = {f.name for f in dataclasses.fields(options_type)}
    opts = {"scenario": scenario, "seed": point["seed"], "limit": point["limit"], "epochs": point["epochs"],
            "device": "cpu", "data_dir": point["data_dir"], "method": point["method"]}
    return {key: value for key, value in opts.items() if key in fields}


def expected_work(point: dict) -> int:
    """A run's training work, roughly: sum over its tasks of epochs x classes x (limit or 6000
    images per class) (the MNIST family's class size). Only its order matters: the sweep
    submits the longest runs first, so that none starts last and leaves a worker idle."""
    from hrn_hw.config import config_from_dict
    from hrn_hw.scenarios import scenario_tasks

    cfg = config_from_dict(point["config"], point["label"])
    work = 0
    for t, task in enumerate(scenario_tasks(cfg.scenario)):
        epochs = point["epochs"] or cfg.training.epochs_for(t)
        work += epochs * min(task.num_classes * 6000, point["limit"] or 1 << 62)
    return work


def finished(point: dict) -> dict | None:
    """The point's results if its results.json is finished (every task) and is this run's."""
    path = Path(point["folder"]) / RESULTS
    try:
        results = json.loads(path.read_text())
        check_run(results, str(path))
    except (OSError, ValueError, HrnError):
        return None
    made_by = (results.get("sweep") or {}).get("run")
    if made_by is None:
        return results
    try:
        same = identity(made_by) == identity(point) and same_training(point, results)
    except (HrnError, KeyError, TypeError, AttributeError):   # a run record this hrn-hw cannot read
        same = False
    return results if same else None


def claim(out: Path, spec: Spec) -> None:
    """Make OUT this sweep's folder (sweep.json); refuse a non-empty folder of anything else."""
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise HrnError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        try:
            ok = json.loads(marker.read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise HrnError(f"{out}: exists and is not a training sweep's folder (no {MARKER}); "
                           "pick another out or -o")
    out.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "version": 1, **dataclasses.asdict(spec)}
    marker.write_text(json.dumps(doc, indent=1, default=str) + "\n")


def run_train_sweep(spec_file: str | Path, out: str | Path | None = None, force: bool = False,
                    scheduler: str | None = None, workers: int | None = None,
                    fn: Callable[[dict], dict] | None = None, progress: bool = True) -> Outcome:
    """Train the spec's runs that are not finished yet (all with force), then write the summary
    and the figures of every finished run into the sweep's folder. fn: what trains one point
    (default run_point)."""
    from hrn_hw.cl.figures import write_figures
    from hrn_hw.sweep import Failed, run_sweep

    spec = read_spec(spec_file)
    if spec.data_dir:
        spec = dataclasses.replace(spec, data_dir=str(Path(spec.data_dir).absolute()))
    out = Path(out or spec.out).absolute()
    claim(out, spec)
    points = spec.points(out)
    todo = points if force else [p for p in points if finished(p) is None]
    todo = sorted(todo, key=expected_work, reverse=True)           # (a stable sort: ties keep the spec's order)
    print(f"{len(points)} runs ({len(spec.methods)} methods x {len(spec.configs)} configs x {len(spec.seeds)} seeds): "
          f"{len(points) - len(todo)} finished before, {len(todo)} to train on {scheduler or 'a local Dask cluster'}",
          file=sys.stderr, flush=True)
    info: dict = {}
    start = time.perf_counter()
    costs = run_sweep(fn or run_point, todo, scheduler=scheduler, workers=workers, progress=progress, desc="training runs",
                      retries=1, keep_failures=True, info=info) if todo else []
    wall = time.perf_counter() - start
    failed = [cost.error for cost in costs if isinstance(cost, Failed)]
    failed += [f"{p['folder']}: the run returned without a finished {RESULTS}"
               for p, cost in zip(todo, costs) if not isinstance(cost, Failed) and finished(p) is None]
    cpu = sum(cost["cpu_seconds"] for cost in costs if isinstance(cost, dict))
    runs = [results for results in map(finished, points) if results is not None]
    doc = summary_doc(runs, failed, timing(wall, cpu, info.get("workers", 0), len(todo)))
    written = write_summary(doc, out) + (write_figures(runs, out) if runs else [])
    return Outcome(doc, out, written)
