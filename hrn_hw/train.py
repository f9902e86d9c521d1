"""Task-by-task training of an HRN on a scenario, with per-epoch resumable checkpoints."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hrn_hw.checkpoint import load_checkpoint, save_checkpoint
from hrn_hw.config import Config
from hrn_hw.device import checked_device
from hrn_hw.errors import HrnError
from hrn_hw.evaluate import evaluate_task
from hrn_hw.scenarios import TaskData, load_tasks, scenario_tasks
from reference import native
from reference.hrn import HRN


@dataclass
class RunOptions:
    scenario: str
    seed: int = 0
    limit: int | None = None
    epochs: int | None = None       # overrides the config's epochs for every task
    device: str = "cpu"
    data_dir: str | None = None
    oracle: bool = False            # train with the per-sample oracle path

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def new_results(cfg: Config, opts: RunOptions, tasks: list[TaskData]) -> dict:
    return {"scenario": opts.scenario, "config": cfg.name, "seed": opts.seed, "limit": opts.limit,
            "tasks": [t.spec.name for t in tasks], "accuracy_matrix": [], "global_accuracy": [],
            "t0_accuracy": [], "unit_usage": [], "train_seconds": [], "eval_seconds": [], "epoch_loss": [],
            "compiled_nodes": native.in_use()}


def make_optimizer(model: HRN, task: int, cfg: Config) -> torch.optim.Optimizer:
    """A fresh optimiser per task over every unit and the current head (old heads are frozen)."""
    for t, head in enumerate(model.heads):
        head.requires_grad_(t == task)
    return build_optimizer(list(model.units.parameters()) + list(model.heads[task].parameters()), cfg)


def build_optimizer(params: list, cfg: Config) -> torch.optim.Optimizer:
    """The config's optimiser over `params` (shared with the benchmark's baseline CNN)."""
    if cfg.training.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.training.lr, foreach=True)
    return torch.optim.SGD(params, lr=cfg.training.lr, momentum=0.9, foreach=True)


def train_epoch(model: HRN, opt, task: TaskData, index: int, batch_size: int, rng: np.random.Generator,
                device: str, oracle: bool, desc: str) -> tuple[float, np.ndarray]:
    """One epoch over a task's training set; returns mean loss and per-unit selection counts."""
    model.train()
    lam = model.cfg.hrn.residue_l1
    order = rng.permutation(len(task.train_x))
    visits = np.zeros(model.num_units, dtype=np.int64)
    total, steps = 0.0, 0
    bar = tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False, mininterval=1.0)
    for start in bar:
        rows = order[start:start + batch_size]
        xb = torch.from_numpy(task.train_x[rows]).to(device)
        yb = torch.from_numpy(task.train_y[rows]).to(device)
        logits, routing = model(xb, index, oracle=oracle)
        loss = F.cross_entropy(logits, yb) + lam * routing.residue_l1.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
        routes = routing.routes.cpu().numpy()
        visits += np.bincount(routes[routes >= 0], minlength=model.num_units)
        if steps % 50 == 0:
            bar.set_postfix(loss=f"{total / steps:.4f}")
    return total / max(steps, 1), visits


def evaluate_seen(model: HRN, tasks: list[TaskData], upto: int, device: str) -> list[dict]:
    return [evaluate_task(model, t, tasks[t].test_x, tasks[t].test_y, device=device) for t in range(upto + 1)]


def record_task(results: dict, evals: list[dict], train_seconds: float, eval_seconds: float,
                train_visits: np.ndarray, losses: list[float]) -> None:
    accs = [e["accuracy"] for e in evals]
    n = [e["samples"] for e in evals]
    results["accuracy_matrix"].append(accs)
    results["global_accuracy"].append(float(np.dot(accs, n) / max(sum(n), 1)))
    results["t0_accuracy"].append(accs[0])
    results["unit_usage"].append({"train_unit_visits": train_visits.tolist(),
                                  "test_unit_visits": evals[-1]["unit_visits"],
                                  "test_route_lengths": evals[-1]["route_lengths"]})
    results["train_seconds"].append(round(train_seconds, 3))
    results["eval_seconds"].append(round(eval_seconds, 3))
    results["epoch_loss"].append([round(l, 6) for l in losses])


def write_results(path: str | Path | None, results: dict) -> None:
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(path)


def print_matrix(results: dict, log=print) -> None:
    """Print the accuracy matrix (row i: after task i) and the global / task-0 accuracies."""
    names = results["tasks"]
    log("accuracy matrix (row: after training task i; column: task j)")
    for i, row in enumerate(results["accuracy_matrix"]):
        cells = " ".join(f"{100 * a:6.2f}" for a in row)
        log(f"  after {names[i]:>16}: {cells}   global {100 * results['global_accuracy'][i]:6.2f}")


def train(cfg: Config, opts: RunOptions, out: str | Path, results_path: str | Path | None = None,
          resume: bool = False, log=print) -> dict:
    """Train task by task; checkpoint to `out` after every epoch; return the results dict."""
    out = Path(out)
    state = None
    if resume:
        if not out.is_file():
            raise HrnError(f"--resume: {out} does not exist")
        model, _, state = load_checkpoint(out)
        if not state or "run" not in state:
            raise HrnError(f"--resume: {out} holds no training state (it is a finished model)")
        cfg = model.cfg
        opts = RunOptions(**state["run"])
        log(f"resuming {opts.scenario} from task {state['task']}, epoch {state['epoch']}")
    torch.manual_seed(opts.seed)
    specs = scenario_tasks(opts.scenario)
    tasks = load_tasks(specs, opts.data_dir, opts.limit, opts.seed)
    check_tasks(tasks)
    if state is None:
        model = HRN(cfg, seed=opts.seed)
        results, start_task, start_epoch = new_results(cfg, opts, tasks), 0, 0
    else:
        results, start_task, start_epoch = state["results"], state["task"], state["epoch"]
        torch.set_rng_state(state["torch_rng"])
    model.to(checked_device(opts.device))
    for t in range(start_task, len(tasks)):
        epochs = opts.epochs if opts.epochs is not None else cfg.training.epochs_for(t)
        resuming = t == start_task and start_epoch > 0   # the checkpoint holds this task's head
        if not resuming:
            model.add_units(cfg.extra_units_before(t))
            model.add_head(tasks[t].spec.num_classes)
        opt = make_optimizer(model, t, cfg)
        if resuming:
            opt.load_state_dict(state["optimizer"])
            prior, e0 = state["progress"], start_epoch
        else:
            prior, e0 = {"seconds": 0.0, "visits": [0] * model.num_units, "losses": []}, 0
        seconds, visits, losses = prior["seconds"], np.array(prior["visits"]), list(prior["losses"])
        for e in range(e0, epochs):
            t0 = time.perf_counter()
            rng = np.random.default_rng([opts.seed, t, e])
            loss, v = train_epoch(model, opt, tasks[t], t, cfg.training.batch_size, rng, opts.device,
                                  opts.oracle, f"task {t + 1}/{len(tasks)} epoch {e + 1}/{epochs}")
            seconds += time.perf_counter() - t0
            visits, losses = visits + v, losses + [loss]
            log(f"task {t + 1}/{len(tasks)} ({tasks[t].spec.name}) epoch {e + 1}/{epochs}: loss {loss:.4f}")
            if e + 1 < epochs:
                progress = {"seconds": seconds, "visits": visits.tolist(), "losses": losses}
                save_checkpoint(out, model, [x.spec for x in tasks[:t + 1]],
                                train_state(opts, t, e + 1, opt, results, progress))
        if cfg.hrn.basis_lock:
            model.pool.lock_initialised()
        t0 = time.perf_counter()
        evals = evaluate_seen(model, tasks, t, opts.device)
        record_task(results, evals, seconds, time.perf_counter() - t0, visits, losses)
        done = t + 1 == len(tasks)
        save_checkpoint(out, model, [x.spec for x in tasks[:t + 1]],
                        None if done else train_state(opts, t + 1, 0, None, results, None))
        write_results(results_path, results)
        log(f"after task {t + 1}: accuracies " + " ".join(f"{100 * e['accuracy']:.2f}" for e in evals)
            + f" | global {100 * results['global_accuracy'][-1]:.2f}")
    return results


def train_state(opts: RunOptions, task: int, epoch: int, opt, results: dict, progress: dict | None) -> dict:
    return {"run": opts.to_dict(), "task": task, "epoch": epoch, "results": results, "progress": progress,
            "optimizer": None if opt is None else opt.state_dict(), "torch_rng": torch.get_rng_state()}


def check_tasks(tasks: list[TaskData]) -> None:
    """Every task needs training images (a too-small --limit or a class-less split has none)."""
    for t in tasks:
        if t.train_x.ndim != 4 or len(t.train_x) == 0:
            raise HrnError(f"task {t.spec.name}: no training images (check --limit and the data)")
