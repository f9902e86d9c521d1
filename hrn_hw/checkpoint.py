"""model.pt: one weights-only checkpoint format for every continual-learning method.

Version 2 (a dict of tensors and plain data; `torch.load(weights_only=True)` reads it):

    format "hrn-hw/checkpoint", version 2
    method        hrn | vc | ewc | lwf | ell
    config        the validated config (config_to_dict), the methods' settings included
    seed          the run's seed
    structure     what rebuilds the model besides config and heads (the strategy's structure():
                  HRN unit_groups and hash_seeds; the VC family's in_shape)
    tasks         [{name, dataset, classes}], one head per task
    state_dict    the model's weights and buffers (HRN: bases, aging state; VC: batchnorm stats)
    method_state  the method's own state (strategy.state()): EWC fishers and anchors per task,
                  LwF / ELL the snapshot of the current task (None between tasks), ELL the
                  autoencoders; {} for hrn and vc
    train_state   None for a finished model; else what resuming needs (run options, task,
                  epoch, optimiser, results, progress, torch RNG, the HRN's routes after each task)

Version 1 (HRN only: no method, structure or method_state; unit_groups and hash_seeds at the
top level) still loads, as an HRN. Every bad file (missing, corrupt, foreign, pickled code,
newer format, inconsistent tensors, NaN/Inf) raises CheckpointError with a one-line reason.
Writes are atomic.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch

from hrn_hw.cl.methods import as_strategy, make_strategy
from hrn_hw.cl.strategy import METHOD_NAMES, Strategy
from hrn_hw.config import config_from_dict, config_to_dict
from hrn_hw.errors import CheckpointError, ConfigError, HrnError
from hrn_hw.scenarios import TaskSpec
from hrn_hw.reference.hrn import HRN

FORMAT = "hrn-hw/checkpoint"
VERSION = 2


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it.

    The file gets the permissions an ordinary open() would give it (0o666 less the umask), not
    the 0o600 of the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plain(obj):
    """A copy of `obj` (nested dicts, lists, tensors, plain values) with tensors detached on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def save_checkpoint(path: str | Path, learner: Strategy | HRN, tasks: list[TaskSpec],
                    train_state: dict | None = None) -> None:
    """Write model.pt of a strategy (or a bare HRN); `train_state` (optimizer, progress, results)
    makes it resumable."""
    strategy = as_strategy(learner)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "method": strategy.name,
        "config": config_to_dict(strategy.cfg),
        "seed": strategy.seed,
        "structure": strategy.structure(),
        "tasks": [{"name": t.name, "dataset": t.dataset, "classes": list(t.classes)} for t in tasks],
        "state_dict": {k: v.detach().cpu() for k, v in strategy.model.state_dict().items()},
        "method_state": _plain(strategy.state()),
        "train_state": train_state,
    }
    atomic_torch_save(payload, path)


ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"          # a pickle stream (protocol >= 2): raw pickle or legacy torch.save


def _torch_load(path: Path, what: str):
    """torch.load, weights only, with its warnings silenced (a legacy pickle makes torch warn)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: {what} holds pickled code or objects other than tensors "
                              "(not an hrn-hw checkpoint)") from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError, KeyError, IndexError,
            TypeError, AttributeError, UnicodeDecodeError, MemoryError, OverflowError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({exc.__class__.__name__})") from None


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc.__class__.__name__})") from None
    if not head:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint (empty file)")
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint (incomplete zip archive)")
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint (bad zip archive)") from None
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (a zip archive without data.pkl)")
        data = _torch_load(path, "it")
    elif head.startswith(PICKLE_MAGIC):
        data = _torch_load(path, "this raw or legacy pickle")
    else:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (corrupt or foreign file)")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hrn-hw checkpoint (foreign file)")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid format version {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this hrn-hw supports "
                              f"({VERSION}); upgrade hrn-hw")
    return data


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_train_state(path: Path, state) -> None:
    """The parts of train_state that resuming relies on have the right types."""
    if state is None:
        return
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: train_state is not a mapping")
    if "run" in state:
        run = state["run"]
        if not isinstance(run, dict) or not all(isinstance(k, str) for k in run):
            raise CheckpointError(f"{path}: train_state.run is not a mapping of option names")
    for key in ("task", "epoch"):
        if key in state and not (_is_int(state[key]) and state[key] >= 0):
            raise CheckpointError(f"{path}: train_state.{key} is not a non-negative integer")
    for key in ("results", "progress", "optimizer"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise CheckpointError(f"{path}: train_state.{key} is not a mapping")
    rng = state.get("torch_rng")
    if rng is not None and not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.dim() == 1):
        raise CheckpointError(f"{path}: train_state.torch_rng is not a uint8 RNG state tensor")
    routes = state.get("routes")
    if routes is not None and not (isinstance(routes, list) and all(r is None or (
            isinstance(r, torch.Tensor) and r.dim() == 2 and not r.is_floating_point()) for r in routes)):
        raise CheckpointError(f"{path}: train_state.routes is not a list of integer route tensors")


PLAIN = (int, float, str, bool, type(None))


def _check_method_state(path: Path, obj, where: str = "method_state") -> None:
    """Nested mappings (string keys), lists, finite tensors and plain values only."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not torch.isfinite(obj).all():
            raise CheckpointError(f"{path}: {where} holds NaN or Inf")
    elif isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise CheckpointError(f"{path}: {where} has a key that is not a string")
        for k, v in obj.items():
            _check_method_state(path, v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_method_state(path, v, f"{where}[{i}]")
    elif not isinstance(obj, PLAIN):
        raise CheckpointError(f"{path}: {where} holds a {type(obj).__name__}, not tensors or plain data")


def _check_state_dict(path: Path, state, model) -> None:
    """Tensors only, finite, of the dtypes the model holds, and a consistent basis pool."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is not a mapping")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entry {bad[0]!r} of state_dict is not a tensor")
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise CheckpointError(f"{path}: tensor {nonfinite[0]!r} holds NaN or Inf")
    expected = model.state_dict()
    for k, v in state.items():
        if k in expected and v.dtype != expected[k].dtype:
            raise CheckpointError(f"{path}: tensor {k!r} has dtype {str(v.dtype).replace('torch.', '')}, "
                                  f"expected {str(expected[k].dtype).replace('torch.', '')}")
    count = state.get("pool.count")
    m = model.cfg.hrn.basis_size
    if count is not None and count.numel() and (int(count.min()) < 0 or int(count.max()) > m):
        raise CheckpointError(f"{path}: tensor 'pool.count' holds basis sizes outside [0, {m}] "
                              f"(basis_size {m})")


def read_train_state(path: str | Path) -> dict | None:
    """The train_state of a checkpoint (None for a finished model), without building the model."""
    path = Path(path)
    data = _read(path)
    state = data.get("train_state")
    _check_train_state(path, state)
    return state


def _method(path: Path, data: dict) -> str:
    """The checkpoint's method: "hrn" in version 1; a known name in version 2."""
    if data["version"] == 1:
        return "hrn"
    method = data.get("method")
    if method not in METHOD_NAMES:
        raise CheckpointError(f"{path}: unknown method {method!r} (known: {', '.join(METHOD_NAMES)})")
    return method


def load_strategy(path: str | Path) -> tuple[Strategy, list[TaskSpec], dict | None]:
    """Rebuild a checkpoint's strategy (model in eval mode, on the CPU, method state restored);
    returns (strategy, tasks, train_state)."""
    path = Path(path)
    data = _read(path)
    method = _method(path, data)
    try:
        cfg = config_from_dict(data.get("config"), "config")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        tasks = [TaskSpec(t["name"], t["dataset"], tuple(int(c) for c in t["classes"])) for t in data["tasks"]]
        strategy = make_strategy(method, cfg, int(data["seed"]))
        if data["version"] == 1:
            structure, method_state = {"unit_groups": data["unit_groups"], "hash_seeds": data["hash_seeds"]}, {}
        else:
            structure, method_state = data["structure"], data["method_state"]
        if not isinstance(structure, dict) or not isinstance(method_state, dict):
            raise CheckpointError(f"{path}: structure and method_state must be mappings")
        model = strategy.rebuild(structure, [t.num_classes for t in tasks])
        state = data["state_dict"]
        _check_state_dict(path, state, model)
        model.load_state_dict(state, strict=True)
        _check_method_state(path, method_state)
        strategy.load_state(method_state)
    except HrnError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError, OverflowError) as exc:
        first = " ".join(str(exc).split()) or exc.__class__.__name__
        raise CheckpointError(f"{path}: inconsistent checkpoint ({first[:200]})") from None
    train_state = data.get("train_state")
    _check_train_state(path, train_state)
    model.eval()
    return strategy, tasks, train_state


def load_checkpoint(path: str | Path) -> tuple[HRN, list[TaskSpec], dict | None]:
    """Rebuild the HRN (eval mode) of an HRN checkpoint; returns (model, tasks, train_state).
    A baseline's checkpoint is refused (its model is no HRN: `load_strategy` reads it)."""
    strategy, tasks, train_state = load_strategy(path)
    if strategy.name != "hrn":
        raise CheckpointError(f"{path}: holds a {strategy.name!r} model, not an HRN (export and bench take "
                              "HRN checkpoints; hrn-hw eval takes every method's)")
    return strategy.model, tasks, train_state
