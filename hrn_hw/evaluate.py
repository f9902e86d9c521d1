"""Accuracy of a model on task test sets (eval mode; an HRN on frozen bases, with its unit usage)."""

from __future__ import annotations

import numpy as np
import torch

from hrn_hw.reference.hrn import HRN


@torch.no_grad()
def evaluate_task(model, task: int, x: np.ndarray, y: np.ndarray, batch_size: int = 1000,
                  device: str = "cpu", oracle: bool = False, keep_routes: bool = False) -> dict:
    """Accuracy of head `task` on (x, y). For an HRN also per-unit visit counts and route
    lengths, and with `keep_routes` every sample's route ("routes": int array [N, d], -1 where
    the sample had stopped). Other models (forward(x, task) -> logits): the accuracy only."""
    model.eval()
    hrn = isinstance(model, HRN)
    correct = 0
    if hrn:
        visits = np.zeros(model.num_units, dtype=np.int64)
        lengths = np.zeros(model.d + 1, dtype=np.int64)
        kept = []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start:start + batch_size]).to(device)
        yb = torch.from_numpy(y[start:start + batch_size]).to(device)
        if not hrn:
            correct += int((model(xb, task).argmax(1) == yb).sum())
            continue
        logits, routing = model(xb, task, oracle=oracle)
        correct += int((logits.argmax(1) == yb).sum())
        routes = routing.routes.cpu().numpy()
        visits += np.bincount(routes[routes >= 0], minlength=model.num_units)
        lengths += np.bincount((routes >= 0).sum(1), minlength=model.d + 1)
        if keep_routes:
            kept.append(routes)
    out = {"accuracy": correct / max(len(x), 1), "samples": int(len(x))}
    if hrn:
        out.update(unit_visits=visits.tolist(), route_lengths=lengths.tolist())
        if keep_routes:
            out["routes"] = np.concatenate(kept) if kept else np.zeros((0, model.d), dtype=np.int64)
    return out
