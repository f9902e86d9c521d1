"""The paper's continual-learning figures over many runs (results dicts of `hrn-hw train`),
one set per scenario, a line or bar per cell (method x config, hrn_hw.cl.summary.cell_key):

- fig2_<scenario>.png: T0 accuracy and global accuracy after each task, mean and a band of
  +- std over seeds (the paper's Fig. 2);
- fig3_<scenario>.png: final forgetting and top accuracy of each task, bars with std (Fig. 3);
- fig4_<scenario>.png: HRN runs only: the share of test images each unit takes per task (each
  task's test set right after it was learned, mean over seeds), stacked bars (Fig. 4);
- fig5_<scenario>.png: HRN runs only: the share of each task's test images whose route changed
  between its own training and the end, bars with std (the stable profile's diagnostic).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrn_hw.cl.summary import check_run, group, run_metrics
from hrn_hw.dataflow.plots import _pyplot, _save


def write_figures(runs: list[dict], folder: str | Path) -> list[Path]:
    """Every figure of `runs` (finished runs, checked) into `folder`; returns the files."""
    for i, results in enumerate(runs):
        check_run(results, f"run {i + 1}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario, members in _by_scenario(runs).items():
        cells = group(members)
        name = _names(cells)
        tasks = members[0]["tasks"]
        written.append(fig_accuracy(cells, name, tasks, folder / f"fig2_{scenario}.png", scenario))
        written.append(fig_forgetting(cells, name, tasks, folder / f"fig3_{scenario}.png", scenario))
        hrn = {key: rs for key, rs in cells.items() if key[0] == "hrn" and all(r.get("unit_usage") for r in rs)}
        if hrn:
            written.append(fig_unit_usage(hrn, name, tasks, folder / f"fig4_{scenario}.png", scenario))
        routed = {key: rs for key, rs in cells.items() if all(r.get("route_changes") for r in rs)}
        if routed:
            written.append(fig_route_changes(routed, name, tasks, folder / f"fig5_{scenario}.png", scenario))
    return written


def _by_scenario(runs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for results in runs:
        out.setdefault(str(results.get("scenario") or "runs"), []).append(results)
    return out


def _names(cells: dict) -> dict:
    """A legend name per cell: the part that differs between cells (method, config or both)."""
    methods = {m for m, _ in cells}
    configs = {c for _, c in cells}
    if len(configs) == 1:
        return {key: key[0] for key in cells}
    if len(methods) == 1:
        return {key: key[1] for key in cells}
    return {key: f"{key[0]} / {key[1]}" for key in cells}


def _stack(runs: list[dict], metric: str) -> np.ndarray:
    """[runs, values] of one metric's per-task list (in percent)."""
    return 100 * np.array([run_metrics(r)[metric] for r in runs], dtype=float)


def fig_accuracy(cells: dict, name: dict, tasks: list, path: Path, title: str) -> Path:
    """T0 and global accuracy after each task: mean line and +- std band per cell."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    steps = np.arange(1, len(tasks) + 1)
    for k, (key, runs) in enumerate(cells.items()):
        for ax, metric in zip(axes, ("t0_accuracy", "global_accuracy")):
            values = _stack(runs, metric)
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, marker="o", ms=3, color=f"C{k % 10}", label=name[key])
            ax.fill_between(steps, np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100), color=f"C{k % 10}",
                            alpha=0.2, linewidth=0)      # accuracies: the band stays in [0, 100]
    for ax, what in zip(axes, ("T0 accuracy (%)", "global accuracy (%)")):
        ax.set_xticks(steps, [str(t) for t in tasks], rotation=30, ha="right", fontsize=7)
        ax.set_xlabel("after training task")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{title}: accuracy after each task (mean ± std over seeds)", fontsize=10)
    return _save(fig, path)


def fig_forgetting(cells: dict, name: dict, tasks: list, path: Path, title: str) -> Path:
    """Final forgetting and top accuracy of each task: grouped bars with std per cell."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 1.1 * len(tasks) + 3), 6.5), sharex=True)
    x = np.arange(len(tasks))
    width = 0.8 / len(cells)
    for k, (key, runs) in enumerate(cells.items()):
        for ax, metric in zip(axes, ("forgetting", "top_accuracy")):
            values = _stack(runs, metric)
            ax.bar(x + (k - (len(cells) - 1) / 2) * width, values.mean(0), width, yerr=values.std(0),
                   capsize=2, color=f"C{k % 10}", label=name[key])
    axes[0].set_ylabel("final forgetting (points)")
    axes[1].set_ylabel("top accuracy (%)")
    axes[1].set_xticks(x, [str(t) for t in tasks], rotation=30, ha="right", fontsize=7)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}: forgetting and top accuracy per task (mean ± std over seeds)", fontsize=10)
    return _save(fig, path)


def unit_shares(runs: list[dict]) -> np.ndarray:
    """[tasks, units]: each unit's share (%) of the test images' unit visits per task, mean over
    the runs (units added later count 0 before they exist)."""
    usage = [[u.get("test_unit_visits") or [] for u in r["unit_usage"]] for r in runs]
    units = max(len(v) for per_run in usage for v in per_run)
    shares = np.zeros((len(runs), len(usage[0]), units))
    for i, per_run in enumerate(usage):
        for t, visits in enumerate(per_run):
            total = sum(visits)
            if total:
                shares[i, t, :len(visits)] = 100 * np.asarray(visits, dtype=float) / total
    return shares.mean(0)


def fig_unit_usage(cells: dict, name: dict, tasks: list, path: Path, title: str) -> Path:
    """Stacked bars per HRN cell: x the task, segments the units' shares of its test images."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(cells), figsize=(max(5.0, 0.6 * len(tasks) + 2) * len(cells), 4),
                             squeeze=False, sharey=True)
    for ax, (key, runs) in zip(axes[0], cells.items()):
        shares = unit_shares(runs)
        bottom = np.zeros(len(shares))
        for u in range(shares.shape[1]):
            ax.bar(np.arange(len(shares)), shares[:, u], 0.7, bottom=bottom, color=plt.cm.tab20(u % 20),
                   label=f"unit {u}")
            bottom += shares[:, u]
        ax.set_xticks(np.arange(len(shares)), [str(t) for t in tasks[:len(shares)]], rotation=30, ha="right",
                      fontsize=7)
        ax.set_title(f"{name[key]} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", fontsize=9)
    axes[0][0].set_ylabel("share of unit visits (%)")
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{title}: units used by each task's test images", fontsize=10)
    return _save(fig, path)


def fig_route_changes(cells: dict, name: dict, tasks: list, path: Path, title: str) -> Path:
    """Grouped bars per HRN cell: each task's test images re-routed by the end (%), mean +- std."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(tasks) + 3), 3.8))
    x = np.arange(len(tasks))
    width = 0.8 / len(cells)
    for k, (key, runs) in enumerate(cells.items()):
        values = 100 * np.array([r["route_changes"][-1] for r in runs], dtype=float)
        ax.bar(x + (k - (len(cells) - 1) / 2) * width, values.mean(0), width, yerr=values.std(0),
               capsize=2, color=f"C{k % 10}", label=name[key])
    ax.set_ylabel("test images re-routed (%)")
    ax.set_xticks(x, [str(t) for t in tasks], rotation=30, ha="right", fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"{title}: routes changed between each task's training and the end (mean ± std)", fontsize=10)
    return _save(fig, path)
