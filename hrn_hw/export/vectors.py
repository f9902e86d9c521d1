"""Golden test vectors: inputs and the golden model's expected outputs (OUT/golden)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from hrn_hw.export.ir import ExportError
from hrn_hw.golden import GoldenResult
from hrn_hw.hls.csim import write_inputs

KEYS = ("pixels", "tasks", "labels", "embedding", "routes", "logits")


def save(directory: Path, pixels: np.ndarray, tasks: np.ndarray, labels: np.ndarray, res: GoldenResult) -> None:
    """OUT/golden/vectors.npz (all arrays) and inputs.bin (the C simulation's input file)."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "vectors.npz", pixels=pixels, tasks=tasks, labels=labels,
             embedding=res.embedding, routes=res.routes, logits=res.logits)
    write_inputs(directory / "inputs.bin", pixels, tasks)


def load(export_dir: Path) -> dict[str, np.ndarray]:
    path = Path(export_dir) / "golden" / "vectors.npz"
    if not path.is_file():
        raise ExportError(f"{export_dir}: no golden vectors (golden/vectors.npz missing)")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in KEYS}
    except zipfile.BadZipFile:
        raise ExportError(f"{path}: corrupt or truncated golden vectors (not a zip archive)") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"{path}: unreadable golden vectors ({exc.__class__.__name__})") from None
    n = len(out["pixels"])
    if any(len(v) != n for v in out.values()):
        raise ExportError(f"{path}: golden arrays disagree in length")
    return out
