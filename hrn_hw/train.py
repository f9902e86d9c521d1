"""Task-by-task training on a scenario, one loop for every continual-learning method (the
strategies of hrn_hw.cl: hrn, vc, ewc, lwf, ell), with per-epoch resumable checkpoints."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hrn_hw.checkpoint import load_strategy, save_checkpoint
from hrn_hw.cl.metrics import summarise
from hrn_hw.cl.methods import as_strategy, make_strategy, strategy_class
from hrn_hw.cl.strategy import Strategy, build_optimizer
from hrn_hw.config import Config
from hrn_hw.device import checked_device
from hrn_hw.errors import HrnError
from hrn_hw.evaluate import evaluate_task
from hrn_hw.scenarios import TaskData, load_tasks, scenario_tasks
from hrn_hw.reference import native
from hrn_hw.reference.hrn import HRN


@dataclass
class RunOptions:
    scenario: str
    seed: int = 0
    limit: int | None = None
    epochs: int | None = None       # overrides the config's epochs for every task
    device: str = "cpu"
    data_dir: str | None = None
    oracle: bool = False            # train with the per-sample oracle path (HRN only)
    method: str = "hrn"             # hrn_hw.cl.methods.METHODS: hrn, vc, ewc, lwf, ell

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def new_results(cfg: Config, opts: RunOptions, tasks: list[TaskData]) -> dict:
    results = {"scenario": opts.scenario, "method": opts.method, "config": cfg.name, "seed": opts.seed,
               "limit": opts.limit, "tasks": [t.spec.name for t in tasks], "accuracy_matrix": [],
               "global_accuracy": [], "t0_accuracy": [], "train_seconds": [], "eval_seconds": [],
               "epoch_loss": [], "metrics": None, "compiled_nodes": native.in_use()}
    if opts.method == "hrn":
        results.update(profile=cfg.profile, switches=cfg.switches, unit_usage=[], route_changes=[])
    return results


def make_optimizer(learner: Strategy | HRN, task: int, cfg: Config) -> torch.optim.Optimizer:
    """A fresh optimiser per task over the strategy's trainable parameters (a bare HRN: every
    unit and the current head; old heads are frozen)."""
    return build_optimizer(as_strategy(learner).trainable(task), cfg)


def train_epoch(learner: Strategy | HRN, opt, task: TaskData, index: int, batch_size: int,
                rng: np.random.Generator, device: str, oracle: bool, desc: str) -> tuple[float, np.ndarray]:
    """One epoch over a task's training set; returns the mean loss and per-unit selection
    counts (HRN; an empty array for the other methods)."""
    strategy = as_strategy(learner)
    strategy.model.train()
    order = rng.permutation(len(task.train_x))
    visits = np.zeros(strategy.num_units, dtype=np.int64)
    total, steps = 0.0, 0
    bar = tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False, mininterval=1.0)
    for start in bar:
        rows = order[start:start + batch_size]
        xb = torch.from_numpy(task.train_x[rows]).to(device)
        yb = torch.from_numpy(task.train_y[rows]).to(device)
        loss, routes = strategy.batch_loss(xb, yb, index, oracle)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
        if routes is not None:
            routes = routes.cpu().numpy()
            visits += np.bincount(routes[routes >= 0], minlength=len(visits))
        if steps % 50 == 0:
            bar.set_postfix(loss=f"{total / steps:.4f}")
    return total / max(steps, 1), visits


def evaluate_seen(model, tasks: list[TaskData], upto: int, device: str, keep_routes: bool = False) -> list[dict]:
    return [evaluate_task(model, t, tasks[t].test_x, tasks[t].test_y, device=device, keep_routes=keep_routes)
            for t in range(upto + 1)]


def record_task(results: dict, evals: list[dict], train_seconds: float, eval_seconds: float,
                train_visits: np.ndarray, losses: list[float], samples: list[int]) -> None:
    """Append task i's row of every per-task key; `metrics` from the whole matrix so far
    (`samples`: test samples per task of the scenario)."""
    accs = [e["accuracy"] for e in evals]
    n = [e["samples"] for e in evals]
    results["accuracy_matrix"].append(accs)
    results["global_accuracy"].append(float(np.dot(accs, n) / max(sum(n), 1)))
    results["t0_accuracy"].append(accs[0])
    if "unit_usage" in results:
        results["unit_usage"].append({"train_unit_visits": train_visits.tolist(),
                                      "test_unit_visits": evals[-1]["unit_visits"],
                                      "test_route_lengths": evals[-1]["route_lengths"]})
    results["train_seconds"].append(round(train_seconds, 3))
    results["eval_seconds"].append(round(eval_seconds, 3))
    results["epoch_loss"].append([round(l, 6) for l in losses])
    results["metrics"] = summarise(results["accuracy_matrix"], samples[:len(accs)])


def record_routes(results: dict, evals: list[dict], routes: list[np.ndarray]) -> None:
    """HRN: keep task i's test routes right after it was learned (appended to `routes`), and
    append route_changes row i: per task j <= i, the fraction of task j's test samples whose
    route now differs from its route right after task j (0 for j = i)."""
    routes.append(evals[-1]["routes"])
    row = [None if ref is None else float(np.mean(np.any(e["routes"] != ref, axis=1))) if len(ref) else 0.0
           for e, ref in zip(evals, routes)]
    results["route_changes"].append(row)


def upgrade_results(results: dict, opts: RunOptions, routes: list, done: int) -> None:
    """The results of a run resumed from a version-1 checkpoint gain `method`, `metrics` and
    (HRN) `route_changes`; the routes of the `done` tasks finished before are unknown (None)."""
    results.setdefault("method", opts.method)
    results.setdefault("metrics", None)
    if opts.method == "hrn":
        results.setdefault("route_changes", [[None] * (i + 1) for i in range(done)])
        routes[:0] = [None] * (done - len(routes))


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
    """Train task by task with the strategy of `opts.method`; checkpoint to `out` after every
    epoch; return the results dict."""
    out = Path(out)
    state = None
    if resume:
        if not out.is_file():
            raise HrnError(f"--resume: {out} does not exist")
        strategy, _, state = load_strategy(out)
        if not state or "run" not in state:
            raise HrnError(f"--resume: {out} holds no training state (it is a finished model)")
        cfg = strategy.cfg
        opts = RunOptions(**state["run"])
        if opts.method != strategy.name:
            raise HrnError(f"--resume: {out} holds a {strategy.name!r} model but its run trains {opts.method!r}")
        log(f"resuming {opts.scenario} from task {state['task']}, epoch {state['epoch']} ({opts.method})")
    else:
        strategy_class(opts.method)                     # an unknown method: before any work
    if opts.oracle and opts.method != "hrn":
        raise HrnError(f"--oracle routes an HRN one sample at a time; method {opts.method!r} has no routing")
    torch.manual_seed(opts.seed)
    specs = scenario_tasks(opts.scenario)
    tasks = load_tasks(specs, opts.data_dir, opts.limit, opts.seed)
    check_tasks(tasks)
    if state is None:
        strategy = make_strategy(opts.method, cfg, opts.seed)
        strategy.build(tuple(tasks[0].train_x.shape[1:]))
        results, start_task, start_epoch, routes = new_results(cfg, opts, tasks), 0, 0, []
    else:
        results, start_task, start_epoch = state["results"], state["task"], state["epoch"]
        routes = [None if r is None else r.numpy().astype(np.int64) for r in state.get("routes") or []]
        upgrade_results(results, opts, routes, start_task)
        torch.set_rng_state(state["torch_rng"])
    strategy.to(checked_device(opts.device))
    hrn = opts.method == "hrn"
    samples = [len(t.test_x) for t in tasks]
    for t in range(start_task, len(tasks)):
        epochs = opts.epochs if opts.epochs is not None else cfg.training.epochs_for(t)
        resuming = t == start_task and start_epoch > 0   # the checkpoint holds this task's head
        strategy.begin_task(t, tasks[t], resuming)
        opt = make_optimizer(strategy, t, cfg)
        if resuming:
            opt.load_state_dict(state["optimizer"])
            prior, e0 = state["progress"], start_epoch
        else:
            prior, e0 = {"seconds": 0.0, "visits": [0] * strategy.num_units, "losses": []}, 0
        seconds, visits, losses = prior["seconds"], np.array(prior["visits"], dtype=np.int64), list(prior["losses"])
        for e in range(e0, epochs):
            t0 = time.perf_counter()
            rng = np.random.default_rng([opts.seed, t, e])
            strategy.begin_epoch(t, e, epochs)
            loss, v = train_epoch(strategy, opt, tasks[t], t, cfg.training.batch_size, rng, opts.device,
                                  opts.oracle, f"task {t + 1}/{len(tasks)} epoch {e + 1}/{epochs}")
            seconds += time.perf_counter() - t0
            visits, losses = visits + v, losses + [loss]
            log(f"task {t + 1}/{len(tasks)} ({tasks[t].spec.name}) epoch {e + 1}/{epochs}: loss {loss:.4f}")
            if e + 1 < epochs:
                progress = {"seconds": seconds, "visits": visits.tolist(), "losses": losses}
                save_checkpoint(out, strategy, [x.spec for x in tasks[:t + 1]],
                                train_state(opts, t, e + 1, opt, results, progress, routes))
        t0 = time.perf_counter()
        strategy.end_task(t, tasks[t], opts.device)
        seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        evals = evaluate_seen(strategy.model, tasks, t, opts.device, keep_routes=hrn)
        eval_seconds = time.perf_counter() - t0
        if hrn:
            record_routes(results, evals, routes)
        record_task(results, evals, seconds, eval_seconds, visits, losses, samples)
        done = t + 1 == len(tasks)
        save_checkpoint(out, strategy, [x.spec for x in tasks[:t + 1]],
                        None if done else train_state(opts, t + 1, 0, None, results, None, routes))
        write_results(results_path, results)
        log(f"after task {t + 1}: accuracies " + " ".join(f"{100 * e['accuracy']:.2f}" for e in evals)
            + f" | global {100 * results['global_accuracy'][-1]:.2f}")
    return results


def train_state(opts: RunOptions, task: int, epoch: int, opt, results: dict, progress: dict | None,
                routes: list[np.ndarray]) -> dict:
    """What resuming needs; `routes`: the HRN's test routes right after each finished task."""
    return {"run": opts.to_dict(), "task": task, "epoch": epoch, "results": results, "progress": progress,
            "optimizer": None if opt is None else opt.state_dict(), "torch_rng": torch.get_rng_state(),
            "routes": [None if r is None else torch.from_numpy(r.astype(np.int16)) for r in routes]}


def check_tasks(tasks: list[TaskData]) -> None:
    """Every task needs training images (a too-small --limit or a class-less split has none)."""
    for t in tasks:
        if t.train_x.ndim != 4 or len(t.train_x) == 0:
            raise HrnError(f"task {t.spec.name}: no training images (check --limit and the data)")
