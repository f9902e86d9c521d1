"""Figures of a simulation: utilisation, latency histogram, throughput against samples in
flight, and a Gantt chart of the first samples."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

CORE = re.compile(r"core\((\d+),(\d+)\)")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def utilisation(res: dict, info: dict, path: Path, title: str) -> Path:
    """Bars per engine (FPGA), or a heatmap of the mesh's cores with the busiest links (many-core)."""
    plt = _pyplot()
    pools = [q for q in res["pools"] if not q["name"].startswith("link(")]
    if "mesh" in info:
        rows, cols = info["mesh"]
        grid = np.zeros((rows, cols))
        for q in pools:
            m = CORE.fullmatch(q["name"])
            if m:
                grid[int(m[1]), int(m[2])] = 100 * q["utilisation"]
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * cols, 0.8 + 0.5 * rows))
        im = ax.imshow(grid, cmap="magma", vmin=0, vmax=100)
        fig.colorbar(im, ax=ax, label="core busy (%)")
        for block, cells in info.get("placement", {}).items():
            for r, c in cells:
                ax.text(c, r, block.replace("projection", "proj").replace("normaliser", "norm"), ha="center",
                        va="center", fontsize=6, color="w" if grid[r, c] < 60 else "k")
        io = info.get("io")
        if io is not None:
            ax.text(io[1], io[0] + 0.35, "io", ha="center", va="center", fontsize=6, color="c")
        ax.set_xticks(range(cols))
        ax.set_yticks(range(rows))
        ax.set_title(title, fontsize=9)
    else:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(pools) + 1.5), 3.6))
        names = [q["name"] + ("" if q["servers"] == 1 else f" x{q['servers']}") for q in pools]
        values = [100 * q["utilisation"] for q in pools]
        bars = ax.bar(range(len(pools)), values, color=["C3" if v == max(values) else "C0" for v in values])
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, v + 1, f"{v:.0f}", ha="center", fontsize=7)
        ax.set_xticks(range(len(pools)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_ylabel("busy (% of the run)")
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def latency_histogram(latency: np.ndarray, lengths: np.ndarray, path: Path, title: str) -> Path:
    """Histogram of per-sample latency (cycles), stacked by route length."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    keys = sorted(set(lengths.tolist()))
    span = int(latency.max() - latency.min())
    bins = np.linspace(latency.min() - 0.5, latency.max() + 0.5, max(2, min(60, span + 2)))
    ax.hist([latency[lengths == k] for k in keys], bins=bins, stacked=True,
            label=[f"{k} unit{'s' if k != 1 else ''}" for k in keys])
    for q, ls in ((50, "--"), (99, ":")):
        ax.axvline(np.percentile(latency, q), color="k", ls=ls, lw=1, label=f"p{q}")
    ax.set_xlabel("latency (cycles, admission to last logit)")
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def in_flight_curve(points: list[dict], path: Path, title: str) -> Path:
    """Throughput (samples per kilocycle) and median latency against samples in flight."""
    plt = _pyplot()
    k = [p["in_flight"] for p in points]
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.plot(k, [1000 * p["samples_per_cycle"] for p in points], "o-", color="C0", label="throughput")
    top = max(1000 * p["samples_per_cycle"] for p in points)
    if points and points[0].get("bound_cycles"):
        top = max(top, 1000 / points[0]["bound_cycles"])
        ax.axhline(1000 / points[0]["bound_cycles"], color="C0", ls=":", lw=1, label="engine bound")
    ax.set_ylim(0, 1.12 * top)
    ax.set_xlabel("samples in flight")
    ax.set_ylabel("samples per 1,000 cycles", color="C0")
    ax2 = ax.twinx()
    ax2.plot(k, [p["median_latency"] for p in points], "s--", color="C1", label="median latency")
    ax2.set_ylabel("median latency (cycles)", color="C1")
    ax.set_xticks(k)
    ax.set_title(title, fontsize=9)
    lines = ax.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower right")
    return _save(fig, path)


def gantt(trace: np.ndarray, servers: list, labels: list, classes: np.ndarray, path: Path, title: str,
          max_rows: int = 40) -> Path:
    """Busy intervals of the first samples' jobs per server (colour per sample; hatched: held
    while blocked)."""
    plt = _pyplot()
    used = sorted(set(trace[:, 2].tolist()), key=lambda s: (servers[s].startswith("link("), s))[:max_rows]
    row = {s: i for i, s in enumerate(used)}
    fig, ax = plt.subplots(figsize=(10, 0.9 + 0.28 * len(used)))
    cmap = plt.get_cmap("tab20")
    for sample, job, server, start, end, release in trace.tolist():
        if server not in row:
            continue
        y = row[server]
        ax.broken_barh([(start, end - start)], (y - 0.4, 0.8), color=cmap(sample % 20))
        if release > end:
            ax.broken_barh([(end, release - end)], (y - 0.4, 0.8), facecolor="none", edgecolor=cmap(sample % 20),
                           hatch="///", lw=0.5)
        if end - start > 0.02 * (trace[:, 4].max() - trace[:, 3].min()):
            ax.text((start + end) / 2, y, f"{sample}:{labels[classes[sample]][job]}", ha="center", va="center",
                    fontsize=5)
    ax.set_yticks(range(len(used)), [servers[s] for s in used], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("cycle")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
