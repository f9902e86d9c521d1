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


def _matrix(rows: list, n: int, scale: float = 100.0) -> np.ndarray:
    """[n, n] lower-triangular matrix (row i: after task i) of a results list of rows, NaN elsewhere."""
    out = np.full((n, n), np.nan)
    for i, row in enumerate(rows[:n]):
        out[i, :len(row)] = scale * np.asarray(row, dtype=float)
    return out


def _heatmap(fig, ax, values: np.ndarray, names: list, title: str, vmin: float, vmax: float, cmap: str) -> None:
    """One task x task panel with its values written in the cells."""
    n = len(names)
    im = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap)
    for i in range(n):
        for j in range(i + 1):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=8, color="w")
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"after {x}" for x in names], fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)


def plot_results(results: dict, path: str | Path) -> Path:
    """Write a PNG: accuracy matrix heatmap, for the HRN the share of each earlier task's test
    images whose route changed after each task, and per-task test unit visits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.get("accuracy_matrix") or []
    if not rows:
        raise HrnError("results hold no accuracy_matrix to plot")
    names = results.get("tasks", [f"task {i}" for i in range(len(rows))])[:len(rows)]
    n = len(rows)
    acc = _matrix(rows, n)
    changes = results.get("route_changes") or []
    usage = [u.get("test_unit_visits", []) for u in results.get("unit_usage", [])]
    units = max((len(u) for u in usage), default=0)
    panels = 3 if changes else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2),
                             gridspec_kw={"width_ratios": [1] * (panels - 1) + [1.2]})
    ax0, ax1 = axes[0], axes[-1]
    _heatmap(fig, ax0, acc, names, "test accuracy (%)", max(0.0, np.nanmin(acc) - 5), 100, "viridis")
    if changes:
        _heatmap(fig, axes[1], _matrix(changes, n), names, "test routes changed since the task (%)", 0, 100,
                 "magma")
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
