"""`hrn-hw bench`: PyTorch inference latency and throughput next to the RTL's cycles per sample.

PyTorch: the reference HRN in eval mode on real test images of the model's scenario; batch-1
latency (median and p90 over N single-sample forwards after a warm-up) and batch-256
throughput (samples/s over several batches). RTL: cycles per sample from the cycle model
(`hrn_hw.rtl.latency.sample_cycles`) on the golden model's routes of the same N images,
turned into time at a stated clock that is *nominal* (no synthesis or timing closure backs it).
Stream: the initiation interval, throughput and latency distribution of a back-to-back stream of
those routes, from `hrn_hw.dataflow.stream.stream_schedule` when the RTL holds several samples
at once (knob in_flight >= 2), else one sample at a time from the cycle model.
BENCH_DIR gets bench.json and bench.png, written atomically (docs/bench.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import hrn_hw
from hrn_hw.device import synchronize
from hrn_hw.errors import HrnError
from hrn_hw.export.atomic import OutputKind, check_target, staged_directory
from hrn_hw.rtl.knobs import NOMINAL_CLOCK_MHZ

FORMAT = "hrn-hw/bench"
VERSION = 1
DEFAULT_N = 500
DEFAULT_CLOCK_MHZ = NOMINAL_CLOCK_MHZ
DEFAULT_STREAM_SAMPLES = 1000   # the pipelined stream's length at least (the N routes repeated)
BATCH = 256
BATCHES = 10           # timed batch-256 forwards (after one warm-up batch)
WARMUP = 10            # untimed single-sample forwards before the batch-1 timing
STEPS = 5

# what --force may replace: an earlier bench (bench.json says so) or an empty directory
BENCH = OutputKind("bench", "bench.json", FORMAT, HrnError)


def clock_mhz(text: str) -> float:
    """argparse type of --clock-mhz: a finite frequency > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frequency in MHz, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def default_dir(model_path: str | Path) -> Path:
    """BENCH_DIR when -o is not given: `bench/` beside model.pt."""
    return Path(model_path).parent / "bench"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inputs

def pick_test_images(tasks: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n test images interleaved over the tasks (image i: task i % T, its (i // T)-th test image,
    repeating a task's test set when it has fewer)."""
    ids = np.arange(n) % len(tasks)
    pixels = np.stack([tasks[t].test_x[(i // len(tasks)) % len(tasks[t].test_x)] for i, t in enumerate(ids)])
    return pixels, ids.astype(np.int64)


def check_export(qm, path: Path, specs: list, input_shape: tuple) -> None:
    """--export OUT must be an export of a model with these tasks and this input shape."""
    if tuple(qm.input_shape) != tuple(input_shape) or len(qm.heads) != len(specs):
        raise HrnError(f"--export {path}: an export of another model ({len(qm.heads)} heads, input "
                       f"{list(qm.input_shape)}; the model has {len(specs)} tasks, input {list(input_shape)})")


def export_temporary(model_path: Path, directory: Path, data_dir: str | None):
    """Export model.pt into `directory` (default formats, 1 golden and 1 eval image per task; no RTL:
    bench needs only the cycle model)."""
    import torch

    from hrn_hw.export.ir import QuantModel
    from hrn_hw.export.pipeline import export

    threads = torch.get_num_threads()          # export() pins torch to one thread
    try:
        export(model_path, directory / "export", golden_per_task=1, eval_limit=1, data_dir=data_dir, quiet=True,
               rtl=False)
    finally:
        torch.set_num_threads(threads)
    return QuantModel.load(directory / "export")


# ---------------------------------------------------------------- PyTorch timing

def time_batch1(model, pixels: np.ndarray, task_ids: np.ndarray, device: str, warmup: int = WARMUP) -> dict:
    """Per-sample forward latency (input copy to the device included), after `warmup` forwards."""
    import torch

    xs = [torch.from_numpy(pixels[i:i + 1]) for i in range(len(pixels))]
    times = np.empty(len(xs))
    with torch.no_grad():
        for i in range(warmup):
            model(xs[i % len(xs)].to(device), int(task_ids[i % len(xs)]))
        synchronize(device)
        for i, x in enumerate(xs):
            t0 = time.perf_counter()
            model(x.to(device), int(task_ids[i]))
            synchronize(device)
            times[i] = time.perf_counter() - t0
    us = 1e6 * times
    median = float(np.median(us))
    return {"warmup_forwards": warmup, "forwards": len(us), "median_us": median,
            "p90_us": float(np.percentile(us, 90)), "mean_us": float(us.mean()), "min_us": float(us.min()),
            "max_us": float(us.max()), "samples_per_s": 1e6 / median}


def pytorch_one_thread(model, pixels, task_ids, tasks, device: str) -> dict:
    """{"1_thread": {"batch1", "batch256"}}: the PyTorch timings again on one CPU thread (CPU
    runs on a machine with more than one core; {} otherwise)."""
    import torch

    if device != "cpu" or (os.cpu_count() or 1) < 2:
        return {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"1_thread": {"batch1": time_batch1(model, pixels, task_ids, device),
                             "batch256": time_batched(model, tasks, device)}}
    finally:
        torch.set_num_threads(threads)


def time_batched(model, tasks: list, device: str, batch: int = BATCH, batches: int = BATCHES) -> dict:
    """Throughput of `batches` forwards of `batch` test images (batch b: task b % T), after one warm-up."""
    import torch

    inputs = [torch.from_numpy(t.test_x[np.arange(batch) % len(t.test_x)]) for t in tasks[:batches]]
    times = np.empty(batches)
    with torch.no_grad():
        model(inputs[0].to(device), 0)
        synchronize(device)
        for b in range(batches):
            t0 = time.perf_counter()
            model(inputs[b % len(inputs)].to(device), b % len(inputs))
            synchronize(device)
            times[b] = time.perf_counter() - t0
    rate = batch * batches / times.sum()
    return {"batch_size": batch, "batches": batches, "seconds": float(times.sum()),
            "median_batch_ms": float(1e3 * np.median(times)), "samples_per_s": rate,
            "amortised_us_per_sample": 1e6 / rate}


# ---------------------------------------------------------------- RTL

def rtl_knobs(export_dir) -> tuple[object, str]:
    """(RtlKnobs, note): the knobs --export OUT's RTL was generated with (OUT/rtl/rtl.json), else the defaults."""
    from hrn_hw.rtl.knobs import RtlKnobs

    path = None if export_dir is None else Path(export_dir) / "rtl"
    if path is None or not (path / "rtl.json").is_file():
        return RtlKnobs(), "the RTL's default knobs"
    from hrn_hw.rtl.emit import read_knobs

    try:
        return read_knobs(path), f"the knobs of the export's RTL ({path / 'rtl.json'})"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HrnError(f"--export {export_dir}: unreadable rtl/rtl.json ({exc})") from None


def rtl_cycles(qm, routes: np.ndarray, task_ids: np.ndarray, knobs) -> np.ndarray:
    """Cycles per sample of the cycle model (`hrn_hw.rtl.latency.sample_cycles`) with `knobs`."""
    from hrn_hw.rtl import latency

    cycles = np.asarray(latency.sample_cycles(qm, routes, knobs, tasks=task_ids))
    if cycles.shape != (len(routes),) or cycles.dtype.kind not in "iu" or (cycles <= 0).any():
        raise RuntimeError(f"sample_cycles gave {cycles.dtype} {list(cycles.shape)}, not {len(routes)} positive "
                           "integer counts")
    return cycles.astype(np.int64)


def rtl_summary(cycles: np.ndarray, routes: np.ndarray, clock: float, knobs, knobs_note: str) -> dict:
    """Cycles per sample and, at the nominal clock, latency and one instance's samples/s."""
    med = float(np.median(cycles))
    steps = (routes >= 0).sum(1)
    return {"nominal_clock_mhz": clock, "clock_note": "nominal: a stated clock, not a synthesis or timing result",
            "knobs": knobs.to_dict(), "knobs_note": knobs_note, "instances": 1,
            "cycles_per_sample": {"min": int(cycles.min()), "median": med, "mean": float(cycles.mean()),
                                  "max": int(cycles.max())},
            "median_cycles_by_route_length": {int(k): float(np.median(cycles[steps == k])) for k in np.unique(steps)},
            "latency_us_nominal": med / clock, "samples_per_s_nominal": clock * 1e6 / med}


def measured_clocks(export_dir) -> list[dict]:
    """Post-route clocks of the export's RTL from `hrn-hw implement` (OUT/implement/<part>/
    implement.json): part, device, Fmax (MHz), whether timing met the target, the file."""
    if export_dir is None:
        return []
    out = []
    for path in sorted(Path(export_dir).glob("implement/*/implement.json")):
        try:
            doc = json.loads(path.read_text())
            mhz = float(doc["fmax_mhz"])
            out.append({"part": str(doc["part"]), "device": str(doc["device"]), "fmax_mhz": mhz,
                        "timing_met": bool(doc.get("timing_met")), "target_mhz": doc.get("target_mhz"),
                        "file": str(path)})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HrnError(f"--export {export_dir}: unreadable {path} ({exc.__class__.__name__})") from None
        if not math.isfinite(mhz) or mhz <= 0:
            raise HrnError(f"--export {export_dir}: {path} holds no positive Fmax")
    return out


def at_clock(cycles: float, mhz: float) -> dict:
    """Latency (us) and one instance's samples/s of `cycles` per sample at `mhz`."""
    return {"latency_us": cycles / mhz, "samples_per_s": mhz * 1e6 / cycles}


def speedups(latency_us: float, samples_per_s: float, runs: dict) -> dict:
    """RTL against each PyTorch run ({name: {"batch1", "batch256"}}): batch-1 latency ratio and
    batch-256 throughput ratio (> 1: the RTL is faster)."""
    return {name: {"batch1_latency": run["batch1"]["median_us"] / latency_us,
                   "batch256_throughput": samples_per_s / run["batch256"]["samples_per_s"]}
            for name, run in runs.items()}


PERCENTILES = (("p50", 50), ("p90", 90), ("p99", 99))


def _distribution(values: np.ndarray) -> dict:
    """min, p50, p90, p99, max and mean of `values` (numpy's linear percentiles)."""
    out = {"min": values.min().item()}
    out.update({name: float(np.percentile(values, q)) for name, q in PERCENTILES})
    out.update({"max": values.max().item(), "mean": float(values.mean())})
    return out


def replicas_text(knobs) -> str:
    """The knobs' replicas as "engine=copies,..." ("none" without any)."""
    return ",".join(f"{k}={v}" for k, v in knobs.replicas) or "none"


def stream_cycles(qm, routes: np.ndarray, task_ids: np.ndarray, knobs, cycles: np.ndarray,
                  samples: int = DEFAULT_STREAM_SAMPLES) -> tuple[dict, np.ndarray]:
    """(the `stream` section in cycles, the stream's latencies [M]).

    in_flight >= 2: `hrn_hw.dataflow.stream.stream_schedule` on the N routes repeated in order to
    M = max(N, samples) samples (sample i: route i % N); the interval is taken over the
    differences of the sorted done cycles, the latency is done - start. in_flight 1: one sample
    at a time, so the interval is the cycle model's cycles per sample (`cycles`) and the latency
    its cycles. Statistics only: every cycle count comes from those two models."""
    from hrn_hw.rtl.latency import resolve_knobs

    n = len(routes)
    knobs = resolve_knobs(qm, knobs, routes, task_ids)        # replicas "auto": chosen from these routes
    base = {"in_flight": knobs.in_flight, "replicas": dict(knobs.replicas)}
    if knobs.in_flight < 2:
        sec = {**base, "model": "hrn_hw.rtl.latency.sample_cycles (one sample at a time)", "samples": n,
               "distinct_samples": n,
               "note": "in_flight 1: the top level takes one sample at a time, so the stream's interval is the "
                       "cycle model's cycles per sample (mean and median over the N samples) and each sample's "
                       "latency is its cycles",
               "interval_cycles": {"mean": float(cycles.mean()), "median": float(np.median(cycles)),
                                   "definition": "cycles per sample of the cycle model"},
               "latency_cycles": _distribution(cycles)}
        return sec, cycles
    from hrn_hw.dataflow.stream import stream_schedule

    m = max(n, samples)
    idx = np.arange(m) % n
    try:
        sched = stream_schedule(qm, routes[idx], task_ids[idx], knobs)
    except HrnError as exc:
        raise HrnError(f"the RTL's knobs (in_flight {knobs.in_flight}, replicas {replicas_text(knobs)}) do not fit "
                       f"this export: {exc}") from None
    done, latency = np.asarray(sched["done"]), np.asarray(sched["latency"])
    gaps = np.diff(np.sort(done))
    sec = {**base, "model": "hrn_hw.dataflow.stream.stream_schedule (back-to-back stream)", "samples": m,
           "distinct_samples": n, "order": "the N samples' routes repeated in order: stream sample i is image i % N",
           "interval_cycles": {"mean": float(gaps.mean()), "median": float(np.median(gaps)),
                               "definition": "differences of the sorted done cycles"},
           "schedule_interval_cycles": float(sched["interval"]),
           "schedule_interval_note": "stream_schedule's interval: done of the last sample / M (pipeline fill "
                                     "included); throughput uses the mean interval above",
           "latency_cycles": _distribution(latency)}
    return sec, latency


def stream_clock(sec: dict, mhz: float, batch256: dict, label: str, **extra) -> dict:
    """The stream at `mhz`: samples/s (clock / mean interval), latency in us, and the ratio to
    PyTorch's batch-256 samples/s (> 1: the RTL stream is faster)."""
    rate = mhz * 1e6 / sec["interval_cycles"]["mean"]
    return {"label": label, **extra, "clock_mhz": mhz, "samples_per_s": rate,
            "interval_us": {k: sec["interval_cycles"][k] / mhz for k in ("mean", "median")},
            "latency_us": {k: v / mhz for k, v in sec["latency_cycles"].items()},
            "rtl_stream_vs_pytorch_batch256_throughput": rate / batch256["samples_per_s"]}


def write_json(path: str | Path, doc: dict) -> Path:
    """Write a benchmark's results `doc` as indented JSON to `path` (its folder made); the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def machine_record(root: str | Path) -> dict:
    """CPU, core count and the git commit of `root` (when it is a checkout), for benchmark files."""
    import subprocess

    out = {"cpu_count": os.cpu_count(), "machine": cpu_name()}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    if commit:
        out["commit"] = commit
    return out


def cpu_name() -> str:
    """The processor model name (/proc/cpuinfo), for benchmark records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_name(device: str) -> str:
    """The GPU's name on "cuda", else the processor's (`cpu_name`), for benchmark records."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return cpu_name()


def command_line(model_path, out, device, export_dir, clock, n, force, data_dir,
                 stream: int = DEFAULT_STREAM_SAMPLES) -> str:
    argv = ["hrn-hw", "bench", str(model_path), "--device", device, "--clock-mhz", f"{clock:g}", "-o", str(out),
            "--n", str(n), "--stream-samples", str(stream)]
    argv += ["--export", str(export_dir)] if export_dir else []
    argv += ["--data-dir", str(data_dir)] if data_dir else []
    return shlex.join(argv + (["--force"] if force else []))


# ---------------------------------------------------------------- report

def format_table(r: dict) -> str:
    """The printed table: per-sample latency and samples/s of each path."""
    b1, bb, rtl, sp = r["pytorch"]["batch1"], r["pytorch"]["batch256"], r["rtl"], r["speedup"]
    dev, clk, cyc = r["pytorch"]["device"], rtl["nominal_clock_mhz"], rtl["cycles_per_sample"]
    rows = [(f"PyTorch {dev}, batch 1 (median)", b1["median_us"], b1["samples_per_s"]),
            (f"PyTorch {dev}, batch 1 (p90)", b1["p90_us"], None),
            (f"PyTorch {dev}, batch {bb['batch_size']} (amortised)", bb["amortised_us_per_sample"],
             bb["samples_per_s"]),
            (f"RTL @ {clk:g} MHz nominal, 1 instance (median)", rtl["latency_us_nominal"],
             rtl["samples_per_s_nominal"])]
    lines = [f"{'path':<44} {'us/sample':>12} {'samples/s':>12}"]
    lines += [f"{name:<44} {us:>12.2f} {'' if rate is None else f'{rate:,.0f}':>12}" for name, us, rate in rows]
    lines.append(f"RTL cycles per sample ({r['samples']['n']} test images): min {cyc['min']:,}  "
                 f"median {cyc['median']:,.0f}  max {cyc['max']:,}")
    lines.append(f"RTL at {clk:g} MHz (nominal) vs PyTorch {dev}: {sp['rtl_vs_pytorch_batch1_latency']:.1f}x "
                 f"batch-1 latency, {sp['rtl_vs_pytorch_batch256_throughput']:.2f}x batch-256 throughput")
    one = r["pytorch"].get("one_thread")
    if one:
        lines.append(f"PyTorch {dev}, 1 thread: batch 1 {one['batch1']['median_us']:,.2f} us (median), batch "
                     f"{one['batch256']['batch_size']} {one['batch256']['samples_per_s']:,.0f} samples/s")
    for m in r.get("rtl_measured") or []:
        ratios = "; ".join(f"{name.replace('_', ' ')}: {v['batch1_latency']:.2f}x batch-1 latency, "
                           f"{v['batch256_throughput']:.3f}x batch-256 throughput" for name, v in m["speedup"].items())
        lines.append(f"RTL @ {m['fmax_mhz']:g} MHz measured on {m['device']}: {m['latency_us']:,.2f} us, "
                     f"{m['samples_per_s']:,.0f} samples/s; vs PyTorch {ratios}")
    lines += stream_lines(r)
    threads = r["pytorch"]["threads"]
    lines.append(f"torch {r['pytorch']['torch_version']}, {threads} thread{'s' * (threads != 1)}, "
                 f"{r['pytorch']['device_name']}")
    return "\n".join(lines)


def stream_lines(r: dict) -> list[str]:
    """The printed table's stream rows: interval and latency in cycles, then each clock."""
    st = r.get("stream")
    if not st:
        return []
    iv, lat, dev = st["interval_cycles"], st["latency_cycles"], r["pytorch"]["device"]
    how = ("one sample at a time (in_flight 1)" if st["in_flight"] < 2 else
           f"{st['in_flight']} in flight, replicas {','.join(f'{k}={v}' for k, v in st['replicas'].items()) or 'none'}")
    lines = [f"RTL stream, {how}, {st['samples']:,} samples: interval mean {iv['mean']:,.1f} median "
             f"{iv['median']:,.1f} cycles; latency min/p50/p90/p99/max "
             + "/".join(f"{lat[k]:,.0f}" for k in ("min", "p50", "p90", "p99", "max")) + " cycles"]
    for c in st["clocks"]:
        where = "nominal" if c["label"] == "nominal" else f"post-route on {c['part']}"
        us = c["latency_us"]
        lines.append(f"RTL stream @ {c['clock_mhz']:g} MHz {where}: {c['samples_per_s']:,.0f} samples/s, latency "
                     f"p50 {us['p50']:,.2f} us p99 {us['p99']:,.2f} us; "
                     f"{c['rtl_stream_vs_pytorch_batch256_throughput']:.2f}x PyTorch {dev} batch-256 throughput")
    return lines


def plot_bench(r: dict, cycles: np.ndarray, steps: np.ndarray, path: Path, latency: np.ndarray | None = None) -> Path:
    """PNG: per-sample latency bars (log axis), a histogram of RTL cycles per sample by route
    length and, with `latency` (the stream's latencies in cycles), their histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b1, bb, rtl = r["pytorch"]["batch1"], r["pytorch"]["batch256"], r["rtl"]
    dev, clk = r["pytorch"]["device"], rtl["nominal_clock_mhz"]
    names = [f"PyTorch {dev}\nbatch 1 (median)", f"PyTorch {dev}\nbatch {bb['batch_size']} (amortised)",
             f"RTL @ {clk:g} MHz\n(nominal, median)"]
    values = [b1["median_us"], bb["amortised_us_per_sample"], rtl["latency_us_nominal"]]
    panels = 2 if latency is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2),
                             gridspec_kw={"width_ratios": [1, 1.2, 1.2][:panels]})
    ax0, ax1 = axes[:2]
    bars = ax0.bar(range(3), values, color=["C0", "C1", "C2"])
    ax0.errorbar([0], [b1["median_us"]], yerr=[[0], [b1["p90_us"] - b1["median_us"]]], fmt="none", ecolor="k",
                 capsize=4, label="p90")
    tops = [max(b1["p90_us"], values[0])] + values[1:]
    for bar, v, top in zip(bars, values, tops):
        ax0.text(bar.get_x() + bar.get_width() / 2, top * 1.08, f"{v:,.0f} us" if v >= 1000 else f"{v:.3g} us",
                 ha="center", va="bottom", fontsize=8)
    ax0.set_yscale("log")
    ax0.set_ylim(min(values) / 3, max(tops) * 3)
    ax0.set_xticks(range(3), names, fontsize=8)
    ax0.set_ylabel("time per sample (us, log)")
    ax0.set_title("per-sample latency")
    ax0.legend(fontsize=7)
    lengths = sorted(set(steps.tolist()))
    bins = np.linspace(cycles.min() - 0.5, cycles.max() + 0.5, min(40, int(cycles.max() - cycles.min()) + 2))
    ax1.hist([cycles[steps == k] for k in lengths], bins=bins, stacked=True,
             label=[f"{k} routing step{'s' if k != 1 else ''}" for k in lengths])
    ax1.axvline(rtl["cycles_per_sample"]["median"], color="k", ls="--", lw=1, label="median")
    ax1.set_xlabel("RTL cycles per sample")
    ax1.set_ylabel("test images")
    ax1.set_title(f"RTL cycles per sample ({len(cycles)} test images)")
    ax1.legend(fontsize=7)
    if latency is not None:
        plot_stream_latency(axes[2], r["stream"], latency, clk)
    sp = r["speedup"]
    fig.suptitle(f"{r['scenario']}: RTL at {clk:g} MHz (nominal) {sp['rtl_vs_pytorch_batch1_latency']:.1f}x "
                 f"batch-1 latency, {sp['rtl_vs_pytorch_batch256_throughput']:.2f}x batch-256 throughput"
                 + (f"; stream {sp['rtl_stream_vs_pytorch_batch256_throughput']:.2f}x"
                    if "rtl_stream_vs_pytorch_batch256_throughput" in sp else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_stream_latency(ax, st: dict, latency: np.ndarray, clk: float) -> None:
    """Histogram of the stream's latencies (cycles; microseconds at the nominal clock on top)."""
    lo, hi = int(latency.min()), int(latency.max())
    ax.hist(latency, bins=np.linspace(lo - 0.5, hi + 0.5, min(40, hi - lo + 2)), color="C2")
    for key, style in (("p50", "--"), ("p99", ":")):
        ax.axvline(st["latency_cycles"][key], color="k", ls=style, lw=1, label=key)
    ax.set_xlabel("RTL stream latency, done - start (cycles)")
    ax.set_ylabel("stream samples")
    how = "one at a time" if st["in_flight"] < 2 else f"{st['in_flight']} in flight"
    ax.set_title(f"RTL stream latency ({how}, {st['samples']:,} samples)", fontsize=10)
    top = ax.secondary_xaxis("top", functions=(lambda c: c / clk, lambda us: us * clk))
    top.set_xlabel(f"us at {clk:g} MHz (nominal)", fontsize=8)
    ax.legend(fontsize=7)


# ---------------------------------------------------------------- the command

def rtl_step(model_path: Path, export_dir, qm, specs: list, pixels: np.ndarray, task_ids: np.ndarray,
             data_dir: str | None, knobs) -> tuple[np.ndarray, np.ndarray, object]:
    """Golden routes of the images and the cycle model's counts: (routes, cycles, QuantModel).

    `qm` is --export's QuantModel, or None to export model.pt into a temporary directory."""
    from hrn_hw import golden

    n = len(pixels)
    if qm is None:
        _say(f"[2/{STEPS}] exporting to a temporary directory; golden routes, RTL cycles and stream of {n} images")
        with tempfile.TemporaryDirectory(prefix="hrn-bench-") as tmp:
            qm = export_temporary(model_path, Path(tmp), data_dir)
    else:
        _say(f"[2/{STEPS}] golden routes, RTL cycles and stream of {n} images ({export_dir})")
    check_export(qm, Path(export_dir or "(temporary)"), specs, pixels.shape[1:])
    routes = golden.run(qm, pixels, task_ids).routes
    return routes, rtl_cycles(qm, routes, task_ids, knobs), qm


def bench(model_path: str | Path, out: str | Path | None = None, device: str = "cpu",
          export_dir: str | Path | None = None, clock: float = DEFAULT_CLOCK_MHZ, n: int = DEFAULT_N,
          force: bool = False, data_dir: str | None = None, stream: int = DEFAULT_STREAM_SAMPLES) -> dict:
    """Run the benchmark; writes BENCH_DIR/bench.json and bench.png and returns the JSON's dict.

    stream: the pipelined RTL's stream has at least this many samples (the N routes repeated)."""
    import torch

    from hrn_hw.checkpoint import load_checkpoint
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.scenarios import load_tasks

    if isinstance(stream, bool) or not isinstance(stream, int) or stream < 2:
        raise HrnError(f"--stream-samples must be an integer >= 2, got {stream!r}")
    model_path = Path(model_path)
    out = Path(out) if out is not None else default_dir(model_path)
    check_target(out, force, BENCH)
    _say(f"[1/{STEPS}] loading {model_path} and {n} test images")
    model, specs, _ = load_checkpoint(model_path)
    qm = None if export_dir is None else QuantModel.load(export_dir)
    knobs, knobs_note = rtl_knobs(export_dir)
    tasks = load_tasks(specs, data_dir)
    pixels, task_ids = pick_test_images(tasks, n)
    routes, cycles, qm = rtl_step(model_path, export_dir, qm, specs, pixels, task_ids, data_dir, knobs)
    stream_sec, latency = stream_cycles(qm, routes, task_ids, knobs, cycles, stream)
    clocks = measured_clocks(export_dir)
    model.to(device)
    model.eval()
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)          # "every core"
    _say(f"[3/{STEPS}] PyTorch {device}: batch 1, {n} forwards after {WARMUP} warm-up")
    b1 = time_batch1(model, pixels, task_ids, device)
    _say(f"[4/{STEPS}] PyTorch {device}: batch {BATCH}, {BATCHES} batches after 1 warm-up"
         + ("; then batch 1 and batch 256 again on one thread" if device == "cpu" and (os.cpu_count() or 1) > 1 else ""))
    bb = time_batched(model, tasks, device)
    rtl = rtl_summary(cycles, routes, clock, knobs, knobs_note)
    one = pytorch_one_thread(model, pixels, task_ids, tasks, device)
    runs = {f"{torch.get_num_threads()}_threads": {"batch1": b1, "batch256": bb}, **one}
    med = rtl["cycles_per_sample"]["median"]
    stream_sec["clocks"] = [stream_clock(stream_sec, clock, bb, "nominal", clock_note=rtl["clock_note"])]
    stream_sec["clocks"] += [stream_clock(stream_sec, c["fmax_mhz"], bb, "post-route", part=c["part"],
                                          device=c["device"], timing_met=c["timing_met"],
                                          clock_note=f"measured after place and route on {c['device']} "
                                                     "(hrn-hw implement)")
                             for c in clocks]
    measured = [{**c, **at_clock(med, c["fmax_mhz"]),
                 "clock_note": f"measured after place and route on {c['device']} (hrn-hw implement)",
                 "speedup": speedups(med / c["fmax_mhz"], c["fmax_mhz"] * 1e6 / med, runs),
                 "rtl_stream_vs_pytorch_batch256_throughput": sc["rtl_stream_vs_pytorch_batch256_throughput"]}
                for c, sc in zip(clocks, stream_sec["clocks"][1:])]
    steps = (routes >= 0).sum(1)
    result = {
        "format": FORMAT, "version": VERSION, "hrn_hw_version": hrn_hw.__version__,
        "command": command_line(model_path, out, device, export_dir, clock, n, force, data_dir, stream),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": str(model_path), "scenario": model.cfg.scenario, "config": model.cfg.name,
        "export": {"path": None if export_dir is None else str(export_dir),
                   "temporary": export_dir is None, "source": qm.source},
        "samples": {"n": n, "per_task": np.bincount(task_ids, minlength=len(tasks)).tolist(),
                    "tasks": [t.spec.name for t in tasks], "selection": "interleaved: image i is the "
                    "(i // T)-th test image of task i % T",
                    "route_lengths": np.bincount(steps, minlength=qm.d + 1).tolist()},
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg()),
                    "python": platform.python_version()},
        "pytorch": {"device": device, "device_name": device_name(device),
                    "torch_version": torch.__version__, "threads": torch.get_num_threads(),
                    "batch1": b1, "batch256": bb, "one_thread": one.get("1_thread")},
        "rtl": rtl,
        "rtl_measured": measured,
        "stream": stream_sec,
        "speedup": {"rtl_vs_pytorch_batch1_latency": b1["median_us"] / rtl["latency_us_nominal"],
                    "rtl_vs_pytorch_batch256_throughput": rtl["samples_per_s_nominal"] / bb["samples_per_s"],
                    "rtl_stream_vs_pytorch_batch256_throughput":
                        stream_sec["clocks"][0]["rtl_stream_vs_pytorch_batch256_throughput"],
                    "note": "RTL at the nominal clock against PyTorch on every core; rtl_vs_*: one instance, one "
                            "sample at a time (median cycles); rtl_stream_vs_*: the stream section's samples/s",
                    "nominal_by_run": speedups(rtl["latency_us_nominal"], rtl["samples_per_s_nominal"], runs)},
    }
    _say(f"[5/{STEPS}] writing {out}")
    with staged_directory(out, force, BENCH) as stage:
        (stage / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
        plot_bench(result, cycles, steps, stage / "bench.png", latency)
    return result
