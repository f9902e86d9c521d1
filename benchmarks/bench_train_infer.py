"""Training and inference cost of the reference HRN against a vanilla CNN (VC), Pairwise-MNIST.

One epoch of task 0 (MNIST 0/1) with the paper config (hrn_hw/configs/pairwise-mnist.yaml:
batch 16, Adam 1e-3) for
  (a) HRN, batched routing   -- hrn_hw.train.train_epoch(..., oracle=False)
  (b) HRN, oracle routing    -- train_epoch(..., oracle=True), one sample at a time; only the
                                first --oracle-limit samples of the epoch are trained and the
                                full-epoch time is EXTRAPOLATED as (seconds / samples) * N
  (c) VC                     -- benchmarks/vanilla_cnn.py: the unit conv blocks chained + the
                                HRN head, same optimiser, batch size, cross-entropy, data order.

The machine may be shared, so everything is measured interleaved in one run: the epoch is cut
into chunks of --chunk-batches batches and the chunks of (a), (c) and (b) alternate (order
rotated each round); the batch sequence is exactly the one a single train_epoch call with
rng = default_rng([seed, 0, 0]) would see (hrn_hw.train.train's order for task 0, epoch 0).
Compare the ratios, which share the background load, rather than the absolute seconds.

Inference (eval mode, no_grad) over the test set at batch 1 and batch 256: one untimed
warm-up pass per (model, batch size), then --repeats timed passes interleaved across models
(--fast-repeats for the cases whose warm-up took under a second: a 0.05 s pass is at the mercy
of one burst of background load), median and fastest reported. Test accuracy is measured after the epoch (HRN via hrn_hw.evaluate).

    PYTHONPATH=. python benchmarks/bench_train_infer.py --out results/bench_train_infer.json
    PYTHONPATH=. python benchmarks/bench_train_infer.py --limit 400 --oracle-limit 64    # smoke
    PYTHONPATH=. python benchmarks/bench_train_infer.py --profile 200   # where HRN training time goes
    PYTHONPATH=. python benchmarks/bench_train_infer.py --device cuda --out results/bench_cuda.json
        # on a GPU, with the reference's exact CUDA settings (hrn_hw.device.checked_device)
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import os
import platform
import pstats
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")   # train_epoch's progress bar: keep it out of the timings

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hrn_hw.bench import cpu_name, device_name, write_json  # noqa: E402
from hrn_hw.config import builtin_config_path, load_config  # noqa: E402
from hrn_hw.device import checked_device, synchronize  # noqa: E402
from hrn_hw.errors import HrnError  # noqa: E402
from hrn_hw.evaluate import evaluate_task  # noqa: E402
from hrn_hw.scenarios import TaskData, load_tasks, scenario_tasks  # noqa: E402
from hrn_hw.train import build_optimizer, make_optimizer, train_epoch  # noqa: E402
from hrn_hw.reference import native  # noqa: E402
from hrn_hw.reference.hrn import HRN  # noqa: E402
from hrn_hw.cl.vc import VanillaCNN  # noqa: E402

SCENARIO = "pairwise-mnist"
TASK = 0


class FixedOrder:
    """Stands in for train_epoch's rng: the chunk is already in epoch order."""

    @staticmethod
    def permutation(n: int) -> np.ndarray:
        return np.arange(n)


def git_state() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    return {"commit": run("rev-parse", "HEAD"),
            "dirty_files": (run("status", "--porcelain", "--", "hrn_hw", "benchmarks") or "").splitlines()}


def source_hashes() -> dict[str, str]:
    """sha256 (first 16 hex) of every project source file this process imported (what ran)."""
    import hashlib
    out = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not isinstance(f, str) or not os.path.isabs(f):
            continue
        path = Path(f).resolve()
        if ROOT in path.parents and (ROOT / ".venv") not in path.parents and path.suffix == ".py" \
                and path.is_file():
            out[str(path.relative_to(ROOT))] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return dict(sorted(out.items()))


def provenance_start() -> dict:
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_at_start": git_state(),
            "source_sha256_at_start": source_hashes()}


def provenance_end(prov: dict) -> dict:
    import hashlib
    start = prov["source_sha256_at_start"]

    def digest(rel: str) -> str | None:
        path = ROOT / rel
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None

    # Only files that had been imported at the start can have run in an older version.
    changed = sorted(k for k in start if digest(k) != start[k])
    prov.update({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_at_end": git_state(),
                 "sources_changed_during_run": changed})
    if changed:
        print(f"WARNING: project sources changed on disk during the run (the start versions ran): "
              f"{', '.join(changed)}", file=sys.stderr)
    return prov


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ---- models -------------------------------------------------------------------------------

def new_hrn(cfg, seed: int, num_classes: int, device: str = "cpu") -> HRN:
    torch.manual_seed(seed)
    model = HRN(cfg, seed=seed).to(device)
    model.add_head(num_classes)
    return model


def new_vc(cfg, seed: int, num_classes: int, in_shape, device: str = "cpu") -> VanillaCNN:
    torch.manual_seed(seed)
    return VanillaCNN(cfg, num_classes, in_shape).to(device)


def vc_optimizer(model: VanillaCNN, cfg) -> torch.optim.Optimizer:
    """The very optimiser (and kernels) the HRN trains with."""
    return build_optimizer(list(model.parameters()), cfg)


def vc_train_epoch(model: VanillaCNN, opt, x: np.ndarray, y: np.ndarray, batch_size: int,
                   device: str = "cpu") -> tuple[float, int]:
    """train_epoch's loop for the VC: same batches, cross-entropy, zero_grad/backward/step."""
    model.train()
    total, steps = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start:start + batch_size]).to(device)
        yb = torch.from_numpy(y[start:start + batch_size]).to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
    return total, steps


class Trainer:
    """One model trained chunk by chunk over a fixed epoch order, timing only the training calls."""

    def __init__(self, name: str, kind: str, model, opt, task: TaskData, order: np.ndarray, batch_size: int,
                 device: str = "cpu"):
        self.name, self.kind, self.model, self.opt, self.device = name, kind, model, opt, device
        self.task, self.order, self.bs = task, order, batch_size
        self.pos, self.seconds, self.loss_sum, self.steps = 0, 0.0, 0.0, 0
        self.chunks: list[tuple[int, float]] = []   # (samples, seconds) of every timed chunk
        self.visits = np.zeros(getattr(model, "num_units", 0), dtype=np.int64)

    @property
    def done(self) -> bool:
        return self.pos >= len(self.order)

    def step(self, samples: int) -> None:
        rows = self.order[self.pos:self.pos + samples]
        x, y = self.task.train_x[rows], self.task.train_y[rows]
        n_batches = (len(rows) + self.bs - 1) // self.bs
        t0 = time.perf_counter()
        if self.kind == "vc":
            loss_sum, steps = vc_train_epoch(self.model, self.opt, x, y, self.bs, self.device)
        else:
            chunk = TaskData(self.task.spec, x, y, self.task.test_x[:0], self.task.test_y[:0])
            mean, visits = train_epoch(self.model, self.opt, chunk, TASK, self.bs, FixedOrder(), self.device,
                                       self.kind == "oracle", self.name)
            loss_sum, steps = mean * n_batches, n_batches
            self.visits += visits
        synchronize(self.device)
        dt = time.perf_counter() - t0
        self.seconds += dt
        self.chunks.append((len(rows), dt))
        self.loss_sum, self.steps, self.pos = self.loss_sum + loss_sum, self.steps + steps, self.pos + len(rows)


def warm_up(trainers: list[Trainer], cfg, samples: int) -> None:
    """Train throw-away copies on a few batches (kernels, allocator, hash-matrix cache)."""
    for tr in trainers:
        model = copy.deepcopy(tr.model)
        opt = vc_optimizer(model, cfg) if tr.kind == "vc" else make_optimizer(model, TASK, cfg)
        Trainer(tr.name, tr.kind, model, opt, tr.task, tr.order[:samples], tr.bs, tr.device).step(samples)


# ---- inference ------------------------------------------------------------------------------

@torch.no_grad()
def infer_pass(forward, x: np.ndarray, y: np.ndarray, batch_size: int, device: str = "cpu") -> tuple[float, float]:
    """Seconds and accuracy of one pass over (x, y) in batches (evaluate_task's loop, no stats);
    the input copies to the device are inside the timed region."""
    correct = 0
    synchronize(device)
    t0 = time.perf_counter()
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start:start + batch_size]).to(device)
        yb = torch.from_numpy(y[start:start + batch_size]).to(device)
        correct += int((forward(xb).argmax(1) == yb).sum())
    synchronize(device)
    return time.perf_counter() - t0, correct / max(len(x), 1)


# ---- report ---------------------------------------------------------------------------------

def fmt_s(v: float) -> str:
    return f"{v:10.2f}" if v >= 1 else f"{v:10.4f}"


def print_table(res: dict, log=print) -> None:
    tr, inf, rat = res["training"], res["inference"], res["ratios"]
    log("")
    log(f"Pairwise-MNIST task 0 ({res['data']['task']}): {res['data']['train_samples']} train / "
        f"{res['data']['test_samples']} test images, batch {res['config']['batch_size']}, "
        f"{res['config']['optimizer']} lr {res['config']['lr']}")
    if res["env"].get("device") == "cuda":
        log(f"device: cuda, {res['env']['device_name']}")
    log(f"torch {res['env']['torch']}, {res['env']['threads']} threads, {res['env']['cpu_model']} "
        f"x{res['env']['nproc']}; loadavg start {res['env']['loadavg_start']} end {res['env']['loadavg_end']}")
    log("")
    log("TRAINING, one epoch (interleaved chunks)")
    log(f"  {'model':<20}{'samples':>8}{'epoch s':>11}{'samples/s':>11}{'ms/batch':>10}{'(chunk med':>12}"
        f"{'min)':>8}{'loss':>9}{'test acc':>10}")
    for key in ("hrn_batched", "hrn_oracle", "vc"):
        r = tr[key]
        sec = r["epoch_seconds"]
        mark = " *" if r.get("extrapolated") else ""
        log(f"  {r['label']:<20}{r['samples_trained']:>8}{fmt_s(sec)}{r['samples_per_s']:>11.1f}"
            f"{r['ms_per_batch']:>10.2f}{r['chunk_ms_per_batch_median']:>12.2f}{r['chunk_ms_per_batch_min']:>8.2f}"
            f"{r['mean_loss']:>9.4f}{100 * r['test_accuracy']:>9.2f}%{mark}")
    o = tr["hrn_oracle"]
    log(f"  * oracle: {o['samples_trained']} of {res['data']['train_samples']} samples trained in "
        f"{o['measured_seconds']:.2f} s; epoch seconds EXTRAPOLATED = {o['measured_seconds']:.2f} / "
        f"{o['samples_trained']} * {res['data']['train_samples']}; its loss/accuracy are after that partial epoch")
    log("")
    log(f"INFERENCE over the test set (eval, no_grad; median of {res['inference_repeats']} after 1 warm-up, "
        f"{res['inference_fast_repeats']} for passes under 1 s)")
    log(f"  {'model':<32}{'batch':>6}{'median s':>11}{'min s':>11}{'samples/s':>11}{'us/sample':>11}{'acc':>9}")
    for r in inf:
        log(f"  {r['label']:<32}{r['batch_size']:>6}{fmt_s(r['median_seconds'])}{fmt_s(min(r['seconds']))}"
            f"{r['samples_per_s']:>11.1f}{1e6 * r['median_seconds'] / res['data']['test_samples']:>11.1f}"
            f"{100 * r['accuracy']:>8.2f}%")
    log("")
    log("RATIOS (time / time; > 1 means the first is slower). 'per-round' and 'fastest' are the load-robust ones;")
    log("the plain ones divide totals that include whatever load the shared machine had at the time")
    for k, v in rat.items():
        log(f"  {k:<62}{v:8.2f}x")
    log("")


def run_bench(args) -> dict:
    cfg = load_config(builtin_config_path(SCENARIO), profile="paper")
    task = load_tasks(scenario_tasks(SCENARIO)[TASK:TASK + 1], None, args.limit, args.seed)[0]
    n_train, n_test = len(task.train_x), len(task.test_x)
    bs = cfg.training.batch_size
    order = np.random.default_rng([args.seed, TASK, 0]).permutation(n_train)
    n_oracle = min(args.oracle_limit, n_train)
    in_shape = tuple(task.train_x.shape[1:])
    classes = task.spec.num_classes

    dev = args.device
    hrn = new_hrn(cfg, args.seed, classes, dev)
    oracle = new_hrn(cfg, args.seed, classes, dev)
    vc = new_vc(cfg, args.seed, classes, in_shape, dev)
    same_init = all(torch.equal(a, b) for a, b in zip(hrn.state_dict().values(), oracle.state_dict().values()))
    trainers = [Trainer("hrn-batched", "batched", hrn, make_optimizer(hrn, TASK, cfg), task, order, bs, dev),
                Trainer("vc", "vc", vc, vc_optimizer(vc, cfg), task, order, bs, dev),
                Trainer("hrn-oracle", "oracle", oracle, make_optimizer(oracle, TASK, cfg), task, order[:n_oracle], bs,
                        dev)]

    load_start = loadavg()
    warm_up(trainers, cfg, min(args.warmup_batches * bs, n_train))
    chunk = args.chunk_batches * bs
    rnd = 0
    t_all = time.perf_counter()
    while not all(t.done for t in trainers):
        live = [t for t in trainers if not t.done]
        k = rnd % len(live)
        for tr in live[k:] + live[:k]:   # rotate who goes first
            tr.step(chunk)
        rnd += 1
        if args.verbose:
            print(f"  round {rnd}: " + ", ".join(f"{t.name} {t.pos}/{len(t.order)} {t.seconds:.1f}s" for t in trainers),
                  flush=True)
    train_wall = time.perf_counter() - t_all

    # test accuracy after the epoch
    hrn_eval = evaluate_task(hrn, TASK, task.test_x, task.test_y, device=dev)
    acc = {"hrn_batched": hrn_eval["accuracy"],
           "hrn_oracle": evaluate_task(oracle, TASK, task.test_x, task.test_y, device=dev)["accuracy"]}
    vc.eval()
    acc["vc"] = infer_pass(vc, task.test_x, task.test_y, 1000, dev)[1]

    training = {}
    for key, tr, label in (("hrn_batched", trainers[0], "HRN batched (a)"), ("vc", trainers[1], "VC (c)"),
                           ("hrn_oracle", trainers[2], "HRN oracle (b)")):
        extrap = key == "hrn_oracle" and tr.pos < n_train
        per_sample = tr.seconds / max(tr.pos, 1)
        epoch_s = per_sample * n_train if key == "hrn_oracle" else tr.seconds
        training[key] = {"label": label, "samples_trained": int(tr.pos), "batches": tr.steps,
                         "measured_seconds": round(tr.seconds, 4), "epoch_seconds": round(epoch_s, 4),
                         "extrapolated": extrap, "samples_per_s": round(tr.pos / max(tr.seconds, 1e-12), 2),
                         "ms_per_batch": round(1e3 * tr.seconds / max(tr.steps, 1), 3),
                         "mean_loss": round(tr.loss_sum / max(tr.steps, 1), 6),
                         "test_accuracy": acc[key],
                         "chunk_ms_per_sample": [round(1e3 * t / n, 4) for n, t in tr.chunks],
                         "chunk_ms_per_batch_median": round(float(np.median(
                             [1e3 * t / n * bs for n, t in tr.chunks])), 3),
                         "chunk_ms_per_batch_min": round(min(1e3 * t / n * bs for n, t in tr.chunks), 3)}
        if key != "vc":
            training[key]["train_unit_visits"] = tr.visits.tolist()
    training["hrn_batched"]["test_unit_visits"] = hrn_eval["unit_visits"]
    training["hrn_batched"]["test_route_lengths"] = hrn_eval["route_lengths"]

    # inference: the trained models; the oracle path runs on the batched-trained HRN
    hrn.eval()
    vc.eval()
    cases = [("hrn_batched", "HRN batched", lambda xb: hrn(xb, TASK)[0], 1),
             ("vc", "VC", vc, 1),
             ("hrn_batched", "HRN batched", lambda xb: hrn(xb, TASK)[0], 256),
             ("vc", "VC", vc, 256),
             ("hrn_oracle", "HRN oracle (per-sample inside)", lambda xb: hrn(xb, TASK, oracle=True)[0], 256)]
    xs, ys = task.test_x, task.test_y
    warm = [infer_pass(fwd, xs, ys, b, dev)[0] for _, _, fwd, b in cases]
    reps = [max(args.repeats, args.fast_repeats) if w < 1.0 else args.repeats for w in warm]
    times = [[] for _ in cases]
    accs = [None] * len(cases)
    for rep in range(max(reps)):
        for i in (range(len(cases)) if rep % 2 == 0 else reversed(range(len(cases)))):
            if rep >= reps[i]:
                continue
            _, _, fwd, b = cases[i]
            sec, a = infer_pass(fwd, xs, ys, b, dev)
            times[i].append(sec)
            accs[i] = a
            if args.verbose:
                print(f"  inference rep {rep + 1}: {cases[i][1]} batch {b}: {sec:.3f} s", flush=True)
    inference = []
    for (key, label, _, b), ts, a in zip(cases, times, accs):
        med = float(np.median(ts))
        inference.append({"model": key, "label": label, "batch_size": b, "seconds": [round(t, 4) for t in ts],
                          "median_seconds": round(med, 4), "samples_per_s": round(n_test / med, 2), "accuracy": a})
    inf = {(r["model"], r["batch_size"]): r["median_seconds"] for r in inference}

    tb, to, tv = (training[k]["epoch_seconds"] for k in ("hrn_batched", "hrn_oracle", "vc"))
    ratios = {"train HRN batched / VC": tb / tv,
              "train HRN oracle (extrapolated) / VC": to / tv,
              "train HRN oracle (extrapolated) / HRN batched": to / tb,
              "infer batch 1: HRN batched / VC": inf[("hrn_batched", 1)] / inf[("vc", 1)],
              "infer batch 256: HRN batched / VC": inf[("hrn_batched", 256)] / inf[("vc", 256)],
              "infer batch 256: HRN oracle / VC": inf[("hrn_oracle", 256)] / inf[("vc", 256)]}
    # load-robust: chunk i of every model covers the same samples and ran in the same round
    def paired(a: Trainer, b: Trainer) -> float:
        return float(np.median([(ta / na) / (tb / nb) for (na, ta), (nb, tb) in zip(a.chunks, b.chunks)]))
    ratios.update({"train HRN batched / VC, median of per-round ratios": paired(trainers[0], trainers[1]),
                   "train HRN oracle / VC, median of per-round ratios": paired(trainers[2], trainers[1]),
                   "train HRN oracle / HRN batched, median of per-round ratios": paired(trainers[2], trainers[0])})
    mins = {(r["model"], r["batch_size"]): min(r["seconds"]) for r in inference}
    ratios.update({"infer batch 1: HRN batched / VC, fastest of repeats": mins[("hrn_batched", 1)] / mins[("vc", 1)],
                   "infer batch 256: HRN batched / VC, fastest of repeats":
                       mins[("hrn_batched", 256)] / mins[("vc", 256)]})
    ratios = {k: round(v, 3) for k, v in ratios.items()}

    return {
        "benchmark": "bench_train_infer",
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "env": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                "cpu_model": cpu_name(), "nproc": os.cpu_count(), "device": dev,
                "device_name": device_name(dev), "platform": platform.platform(),
                "loadavg_start": load_start, "loadavg_end": loadavg(), "compiled_nodes": native.in_use()},
        "config": {"name": cfg.name, "batch_size": bs, "optimizer": cfg.training.optimizer, "lr": cfg.training.lr,
                   "depth": cfg.hrn.depth, "hash_size": cfg.hrn.hash_size, "units": len(hrn.units),
                   "head_hidden": list(cfg.head.hidden)},
        "vc": {"feature_shape": list(vc.feature_shape), "flat_features": vc.flat_features,
               "params": sum(p.numel() for p in vc.parameters()),
               "layers": [str(m) for m in vc.features] + [f"flatten {vc.flat_features}",
                                                          f"head {vc.flat_features}->{'->'.join(map(str, cfg.head.hidden))}->{classes}"]},
        "hrn": {"params_units": sum(p.numel() for p in hrn.units.parameters()),
                "params_head": sum(p.numel() for p in hrn.heads[TASK].parameters()),
                "same_initial_weights_batched_vs_oracle": same_init},
        "data": {"task": task.spec.name, "train_samples": n_train, "test_samples": n_test, "limit": args.limit,
                 "order": f"np.random.default_rng([{args.seed}, {TASK}, 0]).permutation({n_train})"},
        "method": {"chunk_batches": args.chunk_batches, "warmup_batches": args.warmup_batches,
                   "oracle_limit": args.oracle_limit, "oracle_samples_trained": int(trainers[2].pos),
                   "oracle_epoch_seconds": "extrapolated: measured_seconds / samples_trained * train_samples"
                   if training["hrn_oracle"]["extrapolated"] else "measured (whole epoch)",
                   "interleaving": "training chunks of (a), (c), (b) alternate, rotated each round; inference "
                                   "repeats alternate forward/backward over the cases",
                   "inference_repeats_per_case": {f"{r['model']} batch {r['batch_size']}": len(r["seconds"])
                                                  for r in inference},
                   "train_wall_seconds_all_models": round(train_wall, 3)},
        "training": training,
        "inference_repeats": args.repeats,
        "inference_fast_repeats": max(args.repeats, args.fast_repeats),
        "inference": inference,
        "ratios": ratios,
    }


# ---- profile ---------------------------------------------------------------------------------

def install_timers(m, opt, acc: dict) -> callable:
    """Wrap the HRN's routing phases (and opt / backward when given) with wall-time accumulators;
    returns a function that undoes the two process-wide patches (hashing, Tensor.backward)."""
    import hrn_hw.reference.hrn as hrn_mod

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    originals = (hrn_mod.feature_hash, hrn_mod.normalise, torch.Tensor.backward)
    m.route_batched = timed("forward: route_batched (total)", m.route_batched)
    hrn_mod.feature_hash = timed("forward:   feature_hash + normalise (hashing)", hrn_mod.feature_hash)
    hrn_mod.normalise = timed("forward:   feature_hash + normalise (hashing)", hrn_mod.normalise)
    m.pool.select = timed("forward:   pool.select (Alg. 3)", m.pool.select)
    m.pool.maintain = timed("forward:   pool.maintain (Alg. 4 + 2, per-sample loop)", m.pool.maintain)
    m.pool.select_frozen = timed("forward:   pool.select_frozen (eval selection)", m.pool.select_frozen)
    m._run_units = timed("forward:   _run_units (regroup + conv units)", m._run_units)
    m.route_frozen = timed("forward: route_frozen (eval inference, total)", m.route_frozen)
    m._regroup_frozen = timed("forward:   _regroup_frozen (regroup + conv units)", m._regroup_frozen)
    for u in m.units:
        u.forward = timed("forward:     unit forward (conv+BN+act)", u.forward)
    m.heads[TASK].forward = timed("forward: head", m.heads[TASK].forward)
    if opt is not None:
        torch.Tensor.backward = timed("backward (autograd)", torch.Tensor.backward)
        opt.step = timed("optimizer step", opt.step)
        opt.zero_grad = timed("optimizer zero_grad", opt.zero_grad)

    def restore():
        hrn_mod.feature_hash, hrn_mod.normalise, torch.Tensor.backward = originals
    return restore


def run_profile(args) -> dict:
    """Where the HRN batched training time goes: a phase breakdown, cProfile and torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    cfg = load_config(builtin_config_path(SCENARIO), profile="paper")
    task = load_tasks(scenario_tasks(SCENARIO)[TASK:TASK + 1], None, args.limit, args.seed)[0]
    bs = cfg.training.batch_size
    order = np.random.default_rng([args.seed, TASK, 0]).permutation(len(task.train_x))
    n = min(args.profile * bs, len(order))
    model = new_hrn(cfg, args.seed, task.spec.num_classes)
    tr = Trainer("hrn-batched", "batched", model, make_optimizer(model, TASK, cfg), task, order, bs)
    warm_up([tr], cfg, min(args.warmup_batches * bs, len(order)))
    out: dict = {"batches": n // bs, "threads": torch.get_num_threads()}

    # 1) phase breakdown with in-process wrappers (low overhead; nested times are inclusive)
    acc: dict[str, float] = {}
    m1 = copy.deepcopy(model)
    opt1 = make_optimizer(m1, TASK, cfg)
    restore = install_timers(m1, opt1, acc)
    try:
        t0 = time.perf_counter()
        Trainer("p", "batched", m1, opt1, task, order[:n], bs).step(n)
        total = time.perf_counter() - t0
    finally:
        restore()
    out["phase_total_seconds"] = round(total, 4)
    out["phases"] = {k: {"seconds": round(v, 4), "share": round(v / total, 4)} for k, v in acc.items()}
    print(f"\nHRN batched training, {n // bs} batches of {bs}: {total:.3f} s "
          f"({1e3 * total / (n // bs):.2f} ms/batch), {torch.get_num_threads()} threads")
    print("phase breakdown (inclusive wall time; indented phases are inside the one above):")
    for k, v in acc.items():
        print(f"  {k:<58}{v:9.3f} s {100 * v / total:6.1f}%")

    # 2) cProfile (Python-level; adds per-call overhead to Python-heavy code)
    m2 = copy.deepcopy(model)
    trp = Trainer("p", "batched", m2, make_optimizer(m2, TASK, cfg), task, order[:n], bs)
    prof = cProfile.Profile()
    prof.enable()
    trp.step(n)
    prof.disable()
    tables = {}
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key).print_stats(args.profile_top)
        tables[key] = s.getvalue()
        print(f"\ncProfile, top {args.profile_top} by {key}:")
        print(s.getvalue().split("\n", 4)[-1] if key == "cumulative" else s.getvalue())
    out["cprofile"] = tables

    # 3) torch.profiler: op-level self CPU time
    m3 = copy.deepcopy(model)
    trt = Trainer("p", "batched", m3, make_optimizer(m3, TASK, cfg), task, order[:n], bs)
    with profile(activities=[ProfilerActivity.CPU]) as tp:
        trt.step(n)
    table = tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_top)
    print(f"\ntorch.profiler, top {args.profile_top} ops by self CPU time:")
    print(table)
    out["torch_profiler"] = table
    # the same count for the VC over the same batches: aten calls per training batch
    vc = new_vc(cfg, args.seed, task.spec.num_classes, tuple(task.train_x.shape[1:]))
    trv = Trainer("p", "vc", vc, vc_optimizer(vc, cfg), task, order, bs)
    trv.step(min(args.warmup_batches * bs, len(order) - n))     # warm-up, then n samples
    with profile(activities=[ProfilerActivity.CPU]) as tpv:
        trv.step(n)
    calls = {name: sum(e.count for e in p.key_averages() if e.key.startswith("aten::")) / (n // bs)
             for name, p in (("hrn_batched", tp), ("vc", tpv))}
    out["aten_calls_per_batch"] = {k: round(v, 1) for k, v in calls.items()}
    print(f"aten op calls per training batch (optimiser included): HRN {calls['hrn_batched']:.0f}, "
          f"VC {calls['vc']:.0f}")

    # 4) inference (eval, no_grad) on the model trained over those batches: phases and ops
    out["inference"] = {}
    for b, count in ((1, min(500, len(task.test_x))), (256, len(task.test_x))):
        xs, ys = task.test_x[:count], task.test_y[:count]
        m4 = copy.deepcopy(m3).eval()
        infer_pass(lambda xb: m4(xb, TASK)[0], xs, ys, b)   # warm-up
        acc = {}
        restore = install_timers(m4, None, acc)
        try:
            total, _ = infer_pass(lambda xb: m4(xb, TASK)[0], xs, ys, b)
        finally:
            restore()
        acc = dict(acc)   # the wrappers stay on m4: keep the profiled pass out of the phase times
        with profile(activities=[ProfilerActivity.CPU]) as tp:
            infer_pass(lambda xb: m4(xb, TASK)[0], xs, ys, b)
        table = tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
        print(f"\nHRN batched inference, batch {b}, {count} test samples: {total:.3f} s "
              f"({1e6 * total / count:.1f} us/sample)")
        for k, v in acc.items():
            print(f"  {k:<58}{v:9.3f} s {100 * v / total:6.1f}%")
        print(f"torch.profiler, top 15 ops by self CPU time:\n{table}")
        out["inference"][f"batch_{b}"] = {"samples": count, "seconds": round(total, 4),
                                          "phases": {k: round(v, 4) for k, v in acc.items()},
                                          "torch_profiler": table}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="cap train and test samples (smoke runs)")
    ap.add_argument("--oracle-limit", type=int, default=2000,
                    help="samples of the epoch trained on the oracle path; its epoch time is extrapolated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-batches", type=int, default=25, help="batches per interleaved training chunk")
    ap.add_argument("--warmup-batches", type=int, default=5, help="batches trained on throw-away copies first")
    ap.add_argument("--repeats", type=int, default=3, help="timed inference passes per case (median)")
    ap.add_argument("--fast-repeats", type=int, default=15,
                    help="timed passes of the inference cases whose warm-up took under 1 s")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where the three models train and infer (--profile stays on the CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--out", default=None, help="write all results as JSON here")
    ap.add_argument("--profile", type=int, default=0, metavar="BATCHES",
                    help="instead of the benchmark: profile HRN batched training over this many batches")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--verbose", action="store_true", help="print progress after every training round")
    args = ap.parse_args(argv)
    if args.device == "cuda" and args.profile:
        ap.error("--profile measures the CPU path; leave out --device cuda")
    try:
        checked_device(args.device)   # on a GPU, the settings hrn-hw train runs the reference with
    except HrnError as exc:
        ap.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    prov = provenance_start()
    if args.profile:
        res = run_profile(args)
        res["command"] = shlex.join([sys.executable, *sys.argv])
        res["env"] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_model": cpu_name(),
                      "loadavg": loadavg(), "compiled_nodes": native.in_use()}
    else:
        res = run_bench(args)
        print_table(res)
    res["provenance"] = provenance_end(prov)
    if args.out:
        print(f"results written to {write_json(args.out, res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
