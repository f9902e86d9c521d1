"""The simulator's workload: per sample, its route, its map state at each step and its head.

Routes are data-dependent, so a workload is always per sample, taken from the golden model on
real images: an export's golden vectors (`from_golden`) or N test images of the export's
scenario (`from_images`). `repeat` stretches a workload to more samples by cycling through it
(sample i is real sample i mod n), for long streams. `arrivals` gives the cycle each sample
is offered to the chip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrn_hw.errors import HrnError
from hrn_hw.export import vectors
from hrn_hw.export.ir import QuantModel
from hrn_hw.rtl.crossbar import routing_table, state_sequence


@dataclass
class Workload:
    """routes [N, d]: selected unit per step, -1 after the sample stopped (golden.run's
    `routes`); tasks [N]: head per sample; source: where the routes come from, in words."""
    routes: np.ndarray
    tasks: np.ndarray
    source: str
    _classes: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.routes = np.asarray(self.routes, dtype=np.int64)
        self.tasks = np.asarray(self.tasks, dtype=np.int64)
        if self.routes.ndim != 2 or len(self.tasks) != len(self.routes):
            raise HrnError(f"workload: routes [N, d] and tasks [N] expected, got {list(self.routes.shape)} "
                           f"and {list(self.tasks.shape)}")
        if len(self.routes) == 0:
            raise HrnError("workload: no samples")

    def __len__(self) -> int:
        return len(self.routes)

    def classes(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows [C, d + 1], inverse [N]): the distinct (route, task) pairs (route in the first
        d columns, task last) and each sample's pair. A sample's work depends only on its pair."""
        if self._classes is None:      # computed once: every mapping and graph of a run asks for it
            keys = np.concatenate([self.routes, self.tasks[:, None]], axis=1)
            rows, inverse = np.unique(keys, axis=0, return_inverse=True)
            self._classes = (rows, inverse.reshape(-1))
        return self._classes

    def repeat(self, n: int) -> "Workload":
        """n samples cycling through this workload (sample i is sample i mod len(self))."""
        if n < 1:
            raise HrnError(f"samples must be >= 1, got {n}")
        idx = np.arange(n) % len(self)
        note = "" if n == len(self) else f", cycled to {n} samples"
        return Workload(self.routes[idx], self.tasks[idx], self.source + note)

    def route_lengths(self) -> np.ndarray:
        """Selected units per sample [N]."""
        return (self.routes >= 0).sum(1)

    def map_states(self, qm: QuantModel) -> list[list[int]]:
        """Per class (`classes` order), the crossbar map states its route visits (state 0: the
        image, then one per conv call)."""
        table = routing_table(qm)
        rows, _ = self.classes()
        return [state_sequence(table, row[:-1]) for row in rows]

    def check_against(self, qm: QuantModel) -> None:
        """Refuse routes or tasks that this export cannot produce."""
        if self.routes.shape[1] != qm.d:
            raise HrnError(f"workload: routes have {self.routes.shape[1]} steps, the export's depth is {qm.d}")
        if self.tasks.min() < 0 or self.tasks.max() >= len(qm.heads):
            raise HrnError(f"workload: task ids must lie in [0, {len(qm.heads)})")
        bad = (self.routes < -1) | (self.routes >= qm.num_units)
        if bad.any():
            raise HrnError(f"workload: unit ids must lie in [-1, {qm.num_units})")


def from_golden(export_dir: Path, qm: QuantModel) -> Workload:
    """The golden vectors' routes and tasks (OUT/golden/vectors.npz)."""
    vec = vectors.load(export_dir)
    work = Workload(vec["routes"], vec["tasks"], f"the {len(vec['routes'])} golden vectors of {export_dir}")
    work.check_against(qm)
    return work


def from_images(qm: QuantModel, n: int, task: int | None = None, data_dir: str | None = None) -> Workload:
    """The golden model's routes on n test images of the export's scenario: interleaved over its
    tasks (image i: task i % T), or all of task `task`."""
    from hrn_hw import golden
    from hrn_hw.scenarios import load_tasks, scenario_tasks

    scenario = qm.source.get("scenario") if isinstance(qm.source, dict) else None
    if not scenario:
        raise HrnError("--images: the export's manifest names no scenario; use its golden vectors instead")
    specs = scenario_tasks(scenario)
    if len(specs) != len(qm.heads):
        raise HrnError(f"--images: scenario {scenario!r} has {len(specs)} tasks, the export {len(qm.heads)} heads")
    if task is not None and not 0 <= task < len(specs):
        raise HrnError(f"--task {task}: the export's tasks are 0 .. {len(specs) - 1}")
    chosen = list(range(len(specs))) if task is None else [task]
    tasks = load_tasks([specs[t] for t in chosen], data_dir)
    ids = np.arange(n) % len(chosen)
    pixels = np.stack([tasks[t].test_x[(i // len(chosen)) % len(tasks[t].test_x)] for i, t in enumerate(ids)])
    task_ids = np.array(chosen, dtype=np.int64)[ids]
    res = golden.run(qm, pixels, task_ids)
    which = "interleaved over its tasks" if task is None else f"of task {task} ({specs[task].name})"
    return Workload(res.routes, task_ids, f"golden routes of {n} {scenario} test images {which}")


def parse_arrival(text: str) -> tuple[str, float]:
    """`back-to-back` or `poisson:RATE` (RATE samples per cycle, > 0) -> (kind, rate)."""
    if text == "back-to-back":
        return "back-to-back", 0.0
    kind, _, rate = text.partition(":")
    if kind == "poisson" and rate:
        try:
            value = float(rate)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            return "poisson", value
        raise HrnError(f"--arrival {text}: the rate must be a finite number of samples per cycle > 0")
    raise HrnError(f"--arrival {text}: expected back-to-back or poisson:RATE (samples per cycle)")


def arrivals(kind: str, rate: float, n: int, seed: int = 0) -> np.ndarray:
    """Offer cycle of each of n samples: all at 0 (back-to-back: each sample is admitted as soon
    as the chip takes it) or a Poisson process of `rate` samples per cycle (exponential gaps,
    rounded down to whole cycles)."""
    if kind == "back-to-back":
        return np.zeros(n, dtype=np.int64)
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    return np.floor(np.cumsum(gaps)).astype(np.int64)
