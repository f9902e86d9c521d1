"""Continual-learning metrics from a run's accuracy matrix (docs/results.md "Metrics").

The matrix A is lower-triangular: row i holds the accuracy on tasks 0..i right after training
task i (`hrn-hw train`'s `accuracy_matrix`). Every function takes the matrix as a list of rows
(or an [T, T] array with NaN above the diagonal) and returns plain Python numbers, so results
JSON files and hand-built matrices go through the same code.

- global accuracy after task i: the mean of row i weighted by each task's test samples (the
  samples of the rows' tasks; equal weights when not given);
- T0 accuracy after task i: A[i][0];
- forgetting of task j: A[j][j] - A[T-1][j] (its accuracy right after it was learned minus at
  the end; 0 for the last task);
- top accuracy of task j: max over i >= j of A[i][j];
- backward transfer (BWT, Lopez-Paz & Ranzato 2017): the mean over j < T-1 of
  A[T-1][j] - A[j][j] (minus the mean forgetting).
"""

from __future__ import annotations

import numpy as np


def as_matrix(rows) -> np.ndarray:
    """The accuracy matrix as a [T, T] float array, NaN above the diagonal. Raises ValueError
    when a row has the wrong length or a value lies outside [0, 1]."""
    rows = [list(r) for r in rows]
    T = len(rows)
    out = np.full((T, T), np.nan)
    for i, row in enumerate(rows):
        if len(row) != i + 1:
            raise ValueError(f"accuracy matrix row {i} has {len(row)} entries, expected {i + 1}")
        out[i, :i + 1] = row
    finite = out[~np.isnan(out)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError("accuracies must lie in [0, 1]")
    return out


def global_accuracy(rows, samples=None) -> list[float]:
    """Per step i: accuracy over tasks 0..i, weighted by `samples` (test samples per task)."""
    A = as_matrix(rows)
    w = np.ones(len(A)) if samples is None else np.asarray(samples, dtype=float)
    return [float(np.dot(A[i, :i + 1], w[:i + 1]) / w[:i + 1].sum()) for i in range(len(A))]


def t0_accuracy(rows) -> list[float]:
    """Per step i: the accuracy on the first task."""
    return [float(a) for a in as_matrix(rows)[:, 0]]


def forgetting(rows) -> list[float]:
    """Per task j: its accuracy right after learning it minus its accuracy at the end."""
    A = as_matrix(rows)
    return [float(A[j, j] - A[-1, j]) for j in range(len(A))]


def top_accuracy(rows) -> list[float]:
    """Per task j: its best accuracy from the step it was learned on."""
    A = as_matrix(rows)
    return [float(np.nanmax(A[j:, j])) for j in range(len(A))]


def backward_transfer(rows) -> float:
    """BWT: mean over the tasks before the last of (final accuracy - accuracy right after)."""
    A = as_matrix(rows)
    if len(A) < 2:
        return 0.0
    return float(np.mean([A[-1, j] - A[j, j] for j in range(len(A) - 1)]))


def summarise(rows, samples=None) -> dict:
    """Every metric of one run's accuracy matrix, JSON-ready."""
    return {"global_accuracy": global_accuracy(rows, samples), "t0_accuracy": t0_accuracy(rows),
            "forgetting": forgetting(rows), "top_accuracy": top_accuracy(rows),
            "backward_transfer": backward_transfer(rows)}
