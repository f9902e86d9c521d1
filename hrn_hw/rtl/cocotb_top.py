# amaranth: UnusedElaboratable=no
# (a top level built only for its interface, or whose Verilog comes from the cache, is never elaborated)
"""Cocotb testbench of the top level (hrn_hw/rtl/top.py) on Verilator, the `--sim cocotb` path
of `hrn-hw verify --against rtl` (`hrn_hw.rtl.rtlsim`): embedding, route and logits of whole
samples, and the measured cycles of every sample.

`simulate_top` (pytest side) writes the cases (pixels, task ids, expected outputs, modelled
cycles) into `cases<i>.npz` in the build directory and runs the cocotb test `top_run` of this
module on the DUT (built by `hrn_hw.rtl.cocotb_run.run_dut`); `top_run` streams them through
the DUT, first every sample with the input never idle and the outputs never stalled, then some
again under random input gaps and output stalls, and writes what the RTL produced (and the
cycles) into `outputs<i>.npz`; `simulate_top` returns those outputs for the caller to compare
with the golden model (`hrn_hw.verify.compare`) and the cycle model. The pytest tests of this
testbench (golden cases, extreme inputs, routing variants) are in the source checkout's sim/.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import cocotb

from hrn_hw.rtl.cocotb_run import (pack_beats, params, record, run_dut, start, stream_frame, to_unsigned,
                                   unpack_beat, write_if_changed)
from hrn_hw.rtl.knobs import RtlKnobs

P = params()
SEQUENTIAL = RtlKnobs(in_flight=1)        # this testbench's top level: one sample at a time (HrnTop)


# ---- cocotb side -----------------------------------------------------------------------------

def _decode_route(value: int, d: int, width: int) -> list:
    fields = [(value >> (k * width)) & ((1 << width) - 1) for k in range(d)]
    return [f - (1 << width) if f >> (width - 1) else f for f in fields]


async def run_sample(dut, pixels, task: int, rng=None, in_gap: float = 0.0, out_stall: float = 0.0):
    """Stream one sample (`words` pixels per beat); return (embedding, logits, route, cycles)."""
    emb, W = [], P["words"]
    emb_beats = -(-P["s"] // W)

    def on_cycle(i):
        # the task id is sampled with the first pixel only: scramble it afterwards
        dut.task.value = int(task) if i == 0 else (int(task) + 1) % P["tasks"]
        ready = not (rng is not None and out_stall > 0 and rng.random() < out_stall)
        dut.emb_ready.value = int(ready)
        if ready and to_unsigned(dut.emb_valid):
            emb.extend(unpack_beat(to_unsigned(dut.emb_data), W, P["emb_width"], P["emb_signed"]))
            assert to_unsigned(dut.emb_last) == int(len(emb) == emb_beats * W), "emb_last misplaced"

    beats = pack_beats(pixels, W, 8)
    logits, cyc = await stream_frame(dut, beats, P["classes"], rng, in_gap, out_stall, on_cycle=on_cycle,
                                     max_cycles=P["max_cycles"], wake_on=[dut.emb_valid])
    route = _decode_route(int(dut.route.value), P["d"], P["route_width"])
    emb, padding = emb[:P["s"]], emb[P["s"]:]
    if any(padding):                        # positions past s must be zero: make the sample mismatch
        dut._log.warning("embedding words past s are not zero: %s", padding)
        emb.append(0)
    return np.array(emb, dtype=np.int64), np.array(logits, dtype=np.int64), route, cyc


def _exact(got, want) -> bool:
    emb, logits, route = got
    return (len(emb) == len(want["embedding"]) and bool(np.array_equal(emb, want["embedding"]))
            and route == want["route"].tolist() and bool(np.array_equal(logits, want["logits"])))


def _cases():
    z = np.load(P["cases"])
    for n in range(len(z["tasks"])):
        yield n, str(z["names"][n]), {k: z[k][n] for k in ("pixels", "embedding", "route", "logits")}, \
            int(z["tasks"][n]), int(z["model_cycles"][n])


def _fit(values, length: int) -> np.ndarray:
    """A fixed-length row (a wrong count of words is padded with a value no format produces)."""
    row = np.full(length, np.iinfo(np.int64).min, dtype=np.int64)
    row[:min(length, len(values))] = values[:length]
    return row


@cocotb.test()
async def top_run(dut):
    """Every case with the input never idle and the outputs never stalled (bits and cycles),
    then the first `stalled` cases under random input gaps and embedding / logit stalls
    (bits). The outputs go to `outputs.npz`; the caller compares them with the golden model."""
    await start(dut)
    rows = {k: [] for k in ("embedding", "route", "logits", "cycles", "stalled")}
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    for rep, label in ((None, ""), (rng, "stalled: ")):
        for n, name, want, task, model in _cases():
            if rep is not None and n >= P["stalled"]:
                break
            emb, logits, route, cyc = await run_sample(dut, want["pixels"], task, rep, 0.3, 0.4)
            exact = _exact((emb, logits, route), want)
            record(label + name, exact, None if rep else cyc, None if rep else model)
            rows["embedding"].append(_fit(emb, P["s"]))
            rows["route"].append(np.array(route, dtype=np.int64))
            rows["logits"].append(_fit(logits, P["classes"]))
            rows["cycles"].append(cyc if rep is None else -1)
            rows["stalled"].append(rep is not None)
            if not exact:
                dut._log.warning("%s%s: RTL differs from the golden model", label, name)
        if rep is None:
            seconds = time.perf_counter() - t0
    np.savez(P["outputs"], seconds=seconds, **{k: np.array(v) for k, v in rows.items()})
    dut._log.info("%d samples in %.1f s (%.1f samples/s)", len(rows["cycles"]), seconds,
                  sum(1 for s in rows["stalled"] if not s) / max(seconds, 1e-9))



# ---- pytest side -----------------------------------------------------------------------------

def simulate_top(qm, cases: dict, build_dir, verilog=None, knobs=None, stalled: int = 4, quiet: bool = False,
                 jobs: int = 1) -> dict:
    """Build the top level of `qm` (or take its Verilog file), stream `cases` through it and
    return the RTL's outputs: embedding, route, logits, cycles (unstalled runs first, then the
    first `stalled` cases again under random stalls, flagged in `stalled`) and seconds (of the
    unstalled runs). `jobs` > 1 splits the cases into that many simulations running at once
    (one per core), the stalled replays in the first; seconds is then the slowest one's."""
    from hrn_hw.rtl.emit import top_verilog
    from hrn_hw.rtl.top import HrnTop

    build_dir = Path(build_dir).resolve()      # the simulator runs in it: no relative paths
    build_dir.mkdir(parents=True, exist_ok=True)
    knobs = knobs or SEQUENTIAL
    if knobs.pipelined:
        raise ValueError("hrn_hw/rtl/cocotb_top.py drives the one-sample top level (in_flight 1); the pipelined "
                         "one runs on the native testbench's stream mode (tests/test_rtl_pipelined.py)")
    top = HrnTop(qm, knobs)
    if verilog is None:
        verilog = write_if_changed(build_dir / "generated.v", top_verilog(top))
    worst = int(cases["model_cycles"].max()) if len(cases["model_cycles"]) else 1000
    n = len(cases["tasks"])
    bounds = np.linspace(0, n, max(1, min(jobs, n)) + 1).astype(int)
    shards = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        np.savez(build_dir / f"cases{i}.npz", **{k: v[lo:hi] for k, v in cases.items()})
        (build_dir / f"outputs{i}.npz").unlink(missing_ok=True)
        shards.append({"cases": str(build_dir / f"cases{i}.npz"), "outputs": str(build_dir / f"outputs{i}.npz"),
                       "stalled": min(stalled, int(hi - lo)) if i == 0 else 0})
    common = {"s": int(qm.s), "d": int(qm.d), "route_width": top.route_width, "classes": int(qm.max_classes),
              "tasks": len(qm.heads), "emb_signed": bool(qm.emb_fmt.signed), "emb_width": int(qm.emb_fmt.width),
              "words": top.words, "max_cycles": 4 * worst + 1000}
    log_dir = build_dir if quiet else None
    if len(shards) == 1:
        run_dut(verilog, "hrn_top", "hrn_hw.rtl.cocotb_top", {**common, **shards[0]}, build_name=str(build_dir),
                ports_only=True, log_dir=log_dir)
    else:
        run_dut(verilog, "hrn_top", "hrn_hw.rtl.cocotb_top", common, build_name=str(build_dir), ports_only=True,
                log_dir=log_dir, shards=shards)
    return _merge_shards([np.load(sh["outputs"]) for sh in shards])


def _merge_shards(parts: list) -> dict:
    """One output dict from the shards' outputs.npz: every unstalled run in case order, then the
    stalled replays (all in the first shard); seconds of the slowest shard."""
    out = {}
    for key in ("embedding", "route", "logits", "cycles", "stalled"):
        free = [z[key][~z["stalled"]] for z in parts]
        out[key] = np.concatenate(free + [parts[0][key][parts[0]["stalled"]]])
    out["seconds"] = max(float(z["seconds"]) for z in parts)
    return out
