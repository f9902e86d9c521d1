"""Float (reference) against fixed point (golden model): accuracy, routing agreement, saturations."""

from __future__ import annotations

import numpy as np
import torch

from hrn_hw import golden
from hrn_hw.export.ir import QuantModel
from hrn_hw.fixedpoint.fmt import SatCounter


@torch.no_grad()
def compare_task(model, qm: QuantModel, task: int, x: np.ndarray, y: np.ndarray, sat: SatCounter,
                 batch: int = 1000) -> dict:
    """Accuracy of the float model and of the golden model on one task, and route agreement."""
    f_ok = g_ok = agree = 0
    n_cls = len(qm.heads[task].classes)
    for lo in range(0, len(x), batch):
        xb, yb = x[lo:lo + batch], y[lo:lo + batch]
        logits, routing = model(torch.from_numpy(xb), task)
        res = golden.run(qm, xb, np.full(len(xb), task))
        sat.update(res.saturations)
        f_ok += int((logits.argmax(1).numpy() == yb).sum())
        g_ok += int((res.logits[:, :n_cls].argmax(1) == yb).sum())
        agree += int((routing.routes.numpy() == res.routes).all(1).sum())
    n = max(len(x), 1)
    return {"samples": int(len(x)), "float_accuracy": f_ok / n, "fixed_accuracy": g_ok / n,
            "route_agreement": agree / n}
