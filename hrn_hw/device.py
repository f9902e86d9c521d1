"""Where the reference runs: the --device check, and the CUDA settings that keep it float32
and reproducible (docs/performance.md "CUDA")."""

from __future__ import annotations

import os

import numpy as np

from hrn_hw.errors import HrnError


def checked_device(name: str) -> str:
    """`name` ("cpu" or "cuda") once it is usable; on CUDA, with `exact_cuda()` applied."""
    import torch

    if name == "cuda":
        if not torch.cuda.is_available():
            raise HrnError("--device cuda: no CUDA device is available (this torch build or machine has none)")
        exact_cuda()
    return name


def synchronize(device: str) -> None:
    """Wait for the work queued on `device`, so that a host clock read next times it."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def host_array(t) -> np.ndarray:
    """A tensor (or array-like) as a numpy array: a view of a CPU tensor (no copy), a copy of a
    device one; detached either way."""
    if hasattr(t, "detach"):
        t = t.detach()
        return t.numpy() if t.device.type == "cpu" else t.cpu().numpy()
    return np.asarray(t)


def exact_cuda() -> None:
    """Full float32 arithmetic (no TF32 convolutions or matmuls, the reference's number format
    on every device) and deterministic kernels, so that one seed gives one result on a GPU.
    Call it before the first CUDA operation: cuBLAS reads its workspace setting once."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    # on by default with deterministic algorithms: one extra fill kernel per torch.empty, which
    # nearly doubles the launches of the reference's small ops; it guards no result of ours
    torch.utils.deterministic.fill_uninitialized_memory = False
