"""Top level (hrn_hw/rtl/top.py) on Verilator: embedding, route and logits of whole samples
bit-exact with `hrn_hw.golden.run`, and the measured cycles of every sample equal to the cycle
model `hrn_hw.rtl.latency.sample_cycles`.

The pytest side runs the golden model on the samples, writes pixels, task ids, expected
outputs and modelled cycles into `cases.npz` in the build directory, and the cocotb tests
stream them through the DUT: first every sample with the input never idle and the outputs
never stalled (bits and cycles compared), then some under random input gaps and output stalls
(bits compared). Run on an export by `make sim` (`sim/run_export.py`), and by `make test` on a
small model (`tests/test_rtl_top.py`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

import cocotb

from simlib import params, record, run_dut, start, stream_frame, to_signed, to_unsigned

P = params()


# ---- cocotb side -----------------------------------------------------------------------------

def _decode_route(value: int, d: int, width: int) -> list:
    fields = [(value >> (k * width)) & ((1 << width) - 1) for k in range(d)]
    return [f - (1 << width) if f >> (width - 1) else f for f in fields]


async def run_sample(dut, pixels, task: int, rng=None, in_gap: float = 0.0, out_stall: float = 0.0):
    """Stream one sample; return (embedding, logits, route, cycles)."""
    emb = []
    read_emb = to_signed if P["emb_signed"] else to_unsigned

    def on_cycle(i):
        # the task id is sampled with the first pixel only: scramble it afterwards
        dut.task.value = int(task) if i == 0 else (int(task) + 1) % P["tasks"]
        ready = not (rng is not None and out_stall > 0 and rng.random() < out_stall)
        dut.emb_ready.value = int(ready)
        if ready and to_unsigned(dut.emb_valid):
            emb.append(read_emb(dut.emb_data))
            assert to_unsigned(dut.emb_last) == int(len(emb) == P["s"]), "emb_last misplaced"

    logits, cyc = await stream_frame(dut, pixels, P["classes"], rng, in_gap, out_stall, on_cycle=on_cycle,
                                     max_cycles=P["max_cycles"], wake_on=[dut.emb_valid])
    route = _decode_route(int(dut.route.value), P["d"], P["route_width"])
    return np.array(emb, dtype=np.int64), np.array(logits, dtype=np.int64), route, cyc


def _check(name, got, want):
    emb, logits, route = got
    assert len(emb) == len(want["embedding"]), f"{name}: {len(emb)} embedding words, want {len(want['embedding'])}"
    bad = np.nonzero(emb != want["embedding"])[0]
    assert not len(bad), f"{name}: embedding differs at {bad[:8].tolist()}"
    assert route == want["route"].tolist(), f"{name}: route {route}, golden {want['route'].tolist()}"
    assert np.array_equal(logits, want["logits"]), f"{name}: logits {logits.tolist()}, golden {want['logits'].tolist()}"


def _cases():
    z = np.load(P["cases"])
    for n in range(len(z["tasks"])):
        yield n, str(z["names"][n]), {k: z[k][n] for k in ("pixels", "embedding", "route", "logits")}, \
            int(z["tasks"][n]), int(z["model_cycles"][n])


@cocotb.test()
async def top_samples(dut):
    """Every case, input never idle, outputs never stalled: bits and cycles."""
    await start(dut)
    t0, count = time.perf_counter(), 0
    for n, name, want, task, model in _cases():
        emb, logits, route, cyc = await run_sample(dut, want["pixels"], task)
        _check(name, (emb, logits, route), want)
        assert cyc == model, f"{name}: {cyc} cycles measured, the cycle model says {model}"
        record(name, True, cyc, model)
        count += 1
    rate = count / (time.perf_counter() - t0)
    dut._log.info("%d samples bit-exact, cycles equal to the model; %.1f samples/s", count, rate)


@cocotb.test()
async def top_backpressure(dut):
    """Some cases under random input gaps and embedding / logit stalls: bits only."""
    await start(dut)
    rng = np.random.default_rng(7)
    for n, name, want, task, _ in _cases():
        if n >= P["stalled"]:
            break
        emb, logits, route, _ = await run_sample(dut, want["pixels"], task, rng, 0.3, 0.4)
        _check(f"stalled: {name}", (emb, logits, route), want)
        record(f"stalled: {name}", True)


# ---- pytest side -----------------------------------------------------------------------------

def build_cases(qm, pixels: np.ndarray, tasks: np.ndarray, names: list, knobs=None) -> dict:
    """Golden outputs and modelled cycles of the samples, as the simulation reads them."""
    from hrn_hw import golden
    from hrn_hw.rtl.latency import sample_cycles

    res = golden.run(qm, pixels, tasks)
    return {"pixels": pixels.reshape(len(pixels), -1), "tasks": np.asarray(tasks, dtype=np.int64),
            "names": np.array(names), "embedding": res.embedding, "route": res.routes,
            "logits": res.logits, "model_cycles": sample_cycles(qm, res.routes, knobs, tasks)}


def extreme_inputs(qm) -> tuple[np.ndarray, list]:
    """All 0, all 255, one bright pixel (centre), one bright pixel (corner)."""
    shape = tuple(qm.input_shape)
    zero, full = np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)
    centre, corner = zero.copy(), zero.copy()
    centre[0, shape[1] // 2, shape[2] // 2] = 255
    corner[-1, -1, -1] = 255
    return np.stack([zero, full, centre, corner]), ["all 0", "all 255", "one bright pixel (centre)",
                                                    "one bright pixel (corner)"]


def run_top(qm, cases: dict, build_name: str = "top", verilog=None, knobs=None, stalled: int = 4):
    """Build the top level of `qm` (or take its Verilog file) and run the cocotb tests on `cases`."""
    from hrn_hw.rtl.top import HrnTop
    from simlib import BUILD_DIR

    build = BUILD_DIR / build_name
    build.mkdir(parents=True, exist_ok=True)
    np.savez(build / "cases.npz", **cases)
    top = HrnTop(qm, knobs)
    worst = int(cases["model_cycles"].max()) if len(cases["model_cycles"]) else 1000
    return run_dut(verilog or top, "hrn_top", "test_top",
                   {"cases": str(build / "cases.npz"), "s": int(qm.s), "d": int(qm.d),
                    "route_width": top.route_width, "classes": int(qm.max_classes), "tasks": len(qm.heads),
                    "emb_signed": bool(qm.emb_fmt.signed), "stalled": stalled, "max_cycles": 4 * worst + 1000},
                   build_name=build_name)


def routing_variant(qm, uninitialise: list, stop_quantile: float, pixels: np.ndarray) -> object:
    """`qm` with some units uninitialised (zero bases, no calls) and the stop threshold at a
    quantile of the first residue's energy on `pixels`, so that samples stop early on tau_d and
    others run out of initialised units: a model that training can produce, with the same
    weights."""
    from hrn_hw import golden
    from hrn_hw.export.shapes import reachable_calls
    from hrn_hw.fixedpoint import ops
    from hrn_hw.fixedpoint.fmt import SatCounter

    units = [dataclasses.replace(u, initialised=u.initialised and u.index not in uninitialise) for u in qm.units]
    bases = qm.bases.copy()
    bases[list(uninitialise)] = 0
    var = dataclasses.replace(qm, units=units, bases=bases)
    var = dataclasses.replace(var, reachable=reachable_calls(var))
    sat = SatCounter()
    phi = golden.feature_hash(pixels.astype(np.int64), var.hash_seeds[0], var.s)
    h = ops.normalise(phi, var.norm_k, var.h_fmt, sat)
    coef, energy = ops.project(h, var.h_fmt, var.bases, var.basis_fmt, var.coef_fmt, sat)
    sel, _ = ops.select(energy, np.broadcast_to(var.initialised, energy.shape))
    r = ops.residue(h, var.h_fmt, var.bases[sel], coef[np.arange(len(sel)), sel], var.basis_fmt,
                    var.coef_fmt, var.residue_fmt, sat)
    rr = np.einsum("ij,ij->i", r, r)
    return dataclasses.replace(var, stop_threshold=int(np.quantile(rr, stop_quantile)) + 1)


def fixture_cases(qm, count: int) -> dict:
    """The fixture export's first `count` golden-vector images plus the extreme inputs."""
    from test_residue import fixture_export

    z = np.load(fixture_export() / "golden" / "vectors.npz")
    ext, ext_names = extreme_inputs(qm)
    pixels = np.concatenate([z["pixels"][:count], ext])
    tasks = np.concatenate([z["tasks"][:count], np.arange(len(ext)) % len(qm.heads)])
    names = [f"golden vector {n} (task {int(t)})" for n, t in enumerate(z["tasks"][:count])] + ext_names
    return build_cases(qm, pixels, tasks, names)


def test_top():
    """pytest: the fixture export (50 golden-vector images of 5 tasks) and the extreme inputs."""
    from hrn_hw.export.ir import QuantModel
    from test_residue import fixture_export

    qm = QuantModel.load(fixture_export())
    run_top(qm, fixture_cases(qm, 50), "top")


def test_top_stop_and_runout():
    """pytest: a variant of the fixture model with units 2 and 3 uninitialised and tau_d at the
    median first residue: samples stop early on tau_d, others run out of initialised units."""
    from hrn_hw.export.ir import QuantModel
    from test_residue import fixture_export

    base = QuantModel.load(fixture_export())
    z = np.load(fixture_export() / "golden" / "vectors.npz")
    qm = routing_variant(base, [2, 3], 0.5, z["pixels"][:40])
    cases = fixture_cases(qm, 40)
    lengths = (cases["route"] >= 0).sum(axis=1)
    n_init = int(qm.initialised.sum())
    assert ((lengths < n_init) & (lengths > 0)).any(), "no sample stops early on tau_d"
    assert (lengths == n_init).any() and n_init < qm.d, "no sample runs out of initialised units"
    run_top(qm, cases, "top_variant", stalled=2)
