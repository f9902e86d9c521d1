"""Figures of one results JSON: the accuracy matrix and the units each task uses (several
files: hrn_hw.cl.figures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hrn_hw.errors import HrnError


def read_results(path: str | Path) -> dict:
    """A results JSON of `hrn-hw train` as a dict, with one-line errors."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise HrnError(f"{path}: no such results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError):
        raise HrnError(f"{path}: not a JSON results file") from None
    if not isinstance(results, dict):
        raise HrnError(f"{path}: not a results file of hrn-hw train")
    return results


def plot_results(results: dict, path: str | Path) -> Path:
    """Write a PNG: accuracy matrix heatmap (left) and per-task test unit visits (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.get("accuracy_matrix") or []
    if not rows:
        raise HrnError("results hold no accuracy_matrix to plot")
    names = results.get("tasks", [f"task {i}" for i in range(len(rows))])[:len(rows)]
    n = len(rows)
    acc = np.full((n, n), np.nan)
    for i, row in enumerate(rows):
        acc[i, :len(row)] = 100 * np.asarray(row)
    usage = [u.get("test_unit_visits", []) for u in results.get("unit_usage", [])]
    units = max((len(u) for u in usage), default=0)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.2]})
    im = ax0.imshow(acc, vmin=max(0.0, np.nanmin(acc) - 5), vmax=100, cmap="viridis")
    for i in range(n):
        for j in range(i + 1):
            ax0.text(j, i, f"{acc[i, j]:.1f}", ha="center", va="center", fontsize=8, color="w")
    ax0.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax0.set_yticks(range(n), [f"after {x}" for x in names], fontsize=8)
    ax0.set_title("test accuracy (%)")
    fig.colorbar(im, ax=ax0, fraction=0.046)
    if units:
        width = 0.8 / max(len(usage), 1)
        for t, visits in enumerate(usage):
            ax1.bar(np.arange(len(visits)) + t * width, visits, width, label=names[t] if t < n else f"task {t}")
        ax1.set_xticks(np.arange(units) + 0.4 - width / 2, [f"u{k}" for k in range(units)])
        ax1.set_ylabel("test images routed through the unit")
        ax1.set_title("unit usage per task (after its training)")
        ax1.legend(fontsize=7)
    glob = results.get("global_accuracy") or []
    fig.suptitle(f"{results.get('scenario', '')}: global accuracy {100 * glob[-1]:.2f}%" if glob else "")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
