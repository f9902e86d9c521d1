"""One table over many training runs: mean and std over seeds per cell (method x config).

A run is a results dict of `hrn-hw train`; its cell is (results["method"], results["config"])
(a sweep names each config by its label). Metrics come from results["metrics"], or from
`hrn_hw.cl.metrics.summarise` of the accuracy matrix where a file lacks them. Accuracies are
fractions in summary.json and summary.csv, percent in the Markdown table; std is over the
cell's seeds (numpy's, ddof 0: 0 for one seed).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from hrn_hw.cl.metrics import as_matrix, summarise
from hrn_hw.errors import HrnError

FORMAT = "hrn-hw/train-sweep-summary"
# (key, heading, scale in the Markdown table)
COLUMNS = (
    ("global_accuracy", "final global acc. %", 100),
    ("t0_accuracy", "final T0 acc. %", 100),
    ("forgetting_mean", "mean forgetting %", 100),
    ("forgetting_worst", "worst-task forgetting %", 100),
    ("bwt", "BWT %", 100),
    ("top_accuracy_mean", "mean top acc. %", 100),
    ("train_seconds_per_task", "train s / task", 1),
    ("eval_seconds", "eval s", 1),
)
DEFINITIONS = ("forgetting: over the tasks before the last (the last has none); top acc.: mean over tasks "
               "of each task's best accuracy; train s / task: mean training seconds per task; eval s: the "
               "final evaluation, every task's test set")


def cell_key(results: dict) -> tuple[str, str]:
    """A run's cell: (method, config name); runs without a method are HRN runs."""
    return str(results.get("method", "hrn")), str(results.get("config", "?"))


def check_run(results, where: str) -> None:
    """A finished run's results, else a one-line HrnError starting with `where`."""
    if not isinstance(results, dict):
        raise HrnError(f"{where}: not a results file of hrn-hw train")
    tasks, rows = results.get("tasks"), results.get("accuracy_matrix")
    if not isinstance(tasks, list) or not tasks or not isinstance(rows, list):
        raise HrnError(f"{where}: not a results file of hrn-hw train (no tasks or accuracy_matrix)")
    try:
        as_matrix(rows)
    except (TypeError, ValueError) as exc:
        raise HrnError(f"{where}: malformed accuracy_matrix ({exc})") from None
    if len(rows) != len(tasks):
        raise HrnError(f"{where}: unfinished run ({len(rows)} of {len(tasks)} tasks)")
    for key in ("train_seconds", "eval_seconds"):
        if not isinstance(results.get(key), list) or len(results[key]) != len(tasks):
            raise HrnError(f"{where}: {key} must list one value per task")


def run_metrics(results: dict) -> dict:
    """The run's continual-learning metrics (hrn_hw.cl.metrics.summarise's keys)."""
    return results.get("metrics") or summarise(results["accuracy_matrix"])


def run_row(results: dict) -> dict:
    """One run's values of COLUMNS (accuracies as fractions, times in seconds)."""
    m = run_metrics(results)
    before_last = m["forgetting"][:-1] or [0.0]
    return {"global_accuracy": m["global_accuracy"][-1], "t0_accuracy": m["t0_accuracy"][-1],
            "forgetting_mean": float(np.mean(before_last)), "forgetting_worst": float(max(before_last)),
            "bwt": m["backward_transfer"], "top_accuracy_mean": float(np.mean(m["top_accuracy"])),
            "train_seconds_per_task": float(np.mean(results["train_seconds"])),
            "eval_seconds": float(results["eval_seconds"][-1])}


def group(runs: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Runs by cell, cells in the order they first appear."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for results in runs:
        cells.setdefault(cell_key(results), []).append(results)
    return cells


def cell_rows(runs: list[dict]) -> list[dict]:
    """Per cell: its method, config, scenario, seeds and each column's mean and std."""
    out = []
    for (method, config), members in group(runs).items():
        rows = [run_row(r) for r in members]
        stats = {key: {"mean": float(np.mean([r[key] for r in rows])), "std": float(np.std([r[key] for r in rows]))}
                 for key, _, _ in COLUMNS}
        out.append({"method": method, "config": config, "scenario": members[0].get("scenario"),
                    "seeds": [r.get("seed") for r in members], "values": stats})
    return out


def timing(wall_seconds: float, cpu_seconds: float, workers: int, points_run: int) -> dict:
    """A sweep's cost: overhead = wall / (CPU seconds of its points / workers), 1.0 when the
    workers were busy training all along; None when no point ran."""
    busy = cpu_seconds / max(workers, 1)
    return {"wall_seconds": round(wall_seconds, 3), "cpu_seconds": round(cpu_seconds, 3), "workers": workers,
            "points_run": points_run, "overhead": round(wall_seconds / busy, 3) if busy > 0 else None}


def summary_doc(runs: list[dict], failed: list[str] = (), cost: dict | None = None) -> dict:
    """summary.json's content."""
    return {"format": FORMAT, "version": 1, "columns": [key for key, _, _ in COLUMNS], "definitions": DEFINITIONS,
            "cells": cell_rows(runs), "runs": len(runs), "failed": list(failed), "timing": cost}


def format_table(doc: dict) -> str:
    """The Markdown table (mean ± std), then the timing and the failed points."""
    head = ["method", "config", "seeds"] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in doc["cells"]:
        values = [f"{scale * cell['values'][key]['mean']:.2f} ± {scale * cell['values'][key]['std']:.2f}"
                  for key, _, scale in COLUMNS]
        lines.append("| " + " | ".join([cell["method"], cell["config"], str(len(cell["seeds"]))] + values) + " |")
    lines += ["", DEFINITIONS + "."]
    cost = doc.get("timing")
    if cost:
        over = "n/a (no point ran)" if cost["overhead"] is None else f"{cost['overhead']:.2f}"
        lines.append(f"Sweep: {cost['points_run']} runs in {cost['wall_seconds']:.1f} s wall on {cost['workers']} "
                     f"workers, {cost['cpu_seconds']:.1f} CPU s in the runs; overhead wall / (CPU / workers) = {over}.")
    for line in doc.get("failed") or []:
        lines.append(f"FAILED: {line}")
    return "\n".join(lines)


def write_summary(doc: dict, folder: Path) -> list[Path]:
    """summary.md, summary.csv and summary.json in `folder`."""
    folder = Path(folder)
    md, table, js = folder / "summary.md", folder / "summary.csv", folder / "summary.json"
    md.write_text(format_table(doc) + "\n")
    js.write_text(json.dumps(doc, indent=1) + "\n")
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "config", "scenario", "seeds"]
                   + [f"{key}_{stat}" for key, _, _ in COLUMNS for stat in ("mean", "std")])
        for cell in doc["cells"]:
            w.writerow([cell["method"], cell["config"], cell["scenario"], len(cell["seeds"])]
                       + [cell["values"][key][stat] for key, _, _ in COLUMNS for stat in ("mean", "std")])
    return [md, table, js]
