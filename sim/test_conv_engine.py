"""Conv engine (hrn_hw/rtl/conv_engine.py) on Verilator: each call's output map bit-exact with
the golden `hrn_hw.golden.run_unit`, cycles equal to `conv_engine_cycles`.

Two DUTs:
- `conv_engine`: unit 0 of a small real export (Pairwise-MNIST, trained for one epoch on 200
  images, exported with 64 calibration images), every reachable call of the unit: the image
  and the output maps of the other units (made with the golden `run_unit`), plus extremes
  (all zero, all max, alternating +-max so the conv saturates, one bright pixel / element).
- `conv_engine_pool`: a synthetic unit (2 input channels, 5 output channels on 2 lanes, 3x3
  stride-2 kernel without padding, bias finer than the accumulator, trn output format,
  maxpool 2/2 before the LeakyReLU) on maps with channel folding, a map smaller than the
  kernel, and a missing channel group.
- `conv_engine_avgpool`: the synthetic unit's conv and LeakyReLU, then avgpool 3/1 (divisor 9:
  the engine's reciprocal multiply), on the same maps plus a 2x15x13 one.

The golden model imports torch (through hrn_hw.reference.hashing), slow inside the simulator's Python,
so the pytest process computes the expected outputs and the cycle predictions and hands them
over in an .npz file (as sim/test_hash_unit.py does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cocotb

from simlib import (BUILD_DIR, pack_beats, params, record, run_dut, small_export, start, stream_frame,
                    to_signed, to_unsigned, unpack_beat)

P = params()


async def conv_frame(dut, call_id, x, n_out, rng=None, in_gap=0.0, out_stall=0.0):
    """Stream map x (flat CHW integers, `words` per beat) for call `call_id`; return (output
    [n_out], cycles from the first input handshake to the last output handshake, inclusive).
    The positions past the frame's end in the last output beat must be zero."""
    words = P.get("words", 1)

    def drive_call(_):
        dut.call_id.value = int(call_id)

    def read_beat():
        if words == 1:
            return [to_signed(dut.out_data)]
        return unpack_beat(to_unsigned(dut.out_data), words, P["out_width"])

    beats = -(-n_out // words)
    data = x if words == 1 else pack_beats(x, words, P["in_width"])
    out, cyc = await stream_frame(dut, data, beats, rng, in_gap, out_stall, on_cycle=drive_call,
                                  read_output=read_beat, max_cycles=20 * (len(x) + n_out) + 100000)
    assert not to_unsigned(dut.busy), "busy after the last output"
    out = np.array(out, dtype=np.int64).reshape(-1)
    assert not out[n_out:].any(), "non-zero words past the frame's end"
    return out[:n_out], cyc


def load_cases():
    data = np.load(P["vectors"])
    return [(c["name"], c["call"], data[f"{k}.x"], data[f"{k}.y"], c["cycles"])
            for k, c in enumerate(P["cases"])]


def check(dut, name, got, want, cyc=None, model=None):
    bad = np.nonzero(got != want)[0]
    assert len(got) == len(want), f"{name}: {len(got)} outputs, golden {len(want)}"
    assert not len(bad), (f"{name}: {len(bad)} of {len(want)} outputs differ, first at {bad[0]}: "
                          f"rtl {got[bad[0]]} golden {want[bad[0]]}")
    record(name, True, cyc, model)
    if cyc is not None:
        assert cyc == model, f"{name}: cycles {cyc} != model {model}"
    dut._log.info("%s: %d outputs bit-exact%s", name, len(want), f", {cyc} cycles" if cyc else "")


@cocotb.test()
async def conv_calls(dut):
    """Every case, input never idle, output never stalled: bit-exact, cycles == model."""
    await start(dut)
    for name, call, x, y, model in load_cases():
        got, cyc = await conv_frame(dut, call, x, len(y))
        check(dut, name, got, y, cyc, model)


@cocotb.test()
async def conv_backpressure(dut):
    """Random input gaps and output stalls: still bit-exact."""
    await start(dut)
    rng = np.random.default_rng(11)
    for name, call, x, y, _ in load_cases()[::P.get("stall_every", 3)]:
        got, _ = await conv_frame(dut, call, x, len(y), rng, 0.3, 0.4)
        check(dut, f"stalled: {name}", got, y)


# ---- pytest side ---------------------------------------------------------------------------

def _golden(qm, unit: int, x: np.ndarray, frac: int):
    """run_unit on one map; returns (flat output, saturations)."""
    from hrn_hw.fixedpoint.fmt import SatCounter
    from hrn_hw.golden import run_unit

    sat = SatCounter()
    y = run_unit(qm, unit, x[None].astype(np.int64), frac, sat)[0]
    return y.reshape(-1), sat.total_events()


def _run(dut, build: str, cases: list, stall_every: int) -> None:
    """Simulate `dut` (a ConvEngine) on cases (name, call_id, x, y, cycles) in sim/build/<build>."""
    params_ = _write_cases(BUILD_DIR / build, cases)
    params_.update(stall_every=stall_every, words=dut.words, in_width=dut.in_width,
                   out_width=dut.conv.out_fmt.width)
    run_dut(dut, "conv_engine", "test_conv_engine", params_, build_name=build)


def _write_cases(build: Path, cases: list) -> dict:
    """cases: (name, call_id, x, y, cycles) -> the runner's params (vectors in an .npz)."""
    build.mkdir(parents=True, exist_ok=True)
    path = build / "vectors.npz"
    arrays = {}
    for k, (_, _, x, y, _) in enumerate(cases):
        arrays[f"{k}.x"] = np.asarray(x, dtype=np.int64).reshape(-1)
        arrays[f"{k}.y"] = np.asarray(y, dtype=np.int64)
    np.savez(path, **arrays)
    return {"vectors": str(path),
            "cases": [{"name": n, "call": int(c), "cycles": int(cy)} for n, c, _, _, cy in cases]}


def real_cases(qm, unit: int, calls: list, images: np.ndarray, lanes=None, words=1, pixel_lanes=1) -> list:
    """Real and extreme inputs for every reachable call of `unit` of a QuantModel; `images`
    are uint8 test images [N, 1, 28, 28] (the export's golden vectors); the cycles of an engine
    with `lanes`, `words` and `pixel_lanes`."""
    from hrn_hw.export.ir import INPUT_FMT
    from hrn_hw.rtl.conv_engine import conv_engine_cycles

    u = qm.units[unit]
    images = np.asarray(images, dtype=np.int64)
    rng = np.random.default_rng(3)
    cases, sats = [], 0
    for cid, call in enumerate(calls):
        shape = tuple(call["in_shape"])
        cyc = conv_engine_cycles(u, call, lanes, words, pixel_lanes)
        if call["source"] == "input":
            lo, hi, frac = 0, INPUT_FMT.qmax, INPUT_FMT.frac
            bright = np.zeros(shape, dtype=np.int64)
            bright[0, shape[1] // 2, shape[2] // 3] = hi
            maps = [("image 0", images[0]), ("image 1", images[1]), ("all zero", np.zeros(shape, np.int64)),
                    ("all 255", np.full(shape, hi)), ("one bright pixel", bright)]
        else:
            src = int(call["source"])
            fmt = qm.units[src].out_fmt
            lo, hi, frac = fmt.qmin, fmt.qmax, fmt.frac
            real = [_golden(qm, src, images[k], INPUT_FMT.frac)[0].reshape(shape) for k in (2, 3)]
            one = np.zeros(shape, dtype=np.int64)
            one[-1, shape[1] - 1, 0] = hi
            maps = [(f"unit {src} output of image 2", real[0]), (f"unit {src} output of image 3", real[1]),
                    ("all zero", np.zeros(shape, np.int64)), ("all max", np.full(shape, hi)),
                    ("all min", np.full(shape, lo)),
                    ("random +-max (saturating)", np.where(rng.random(shape) < 0.5, hi, lo)),
                    ("one element at max", one)]
        for what, x in maps:
            y, s = _golden(qm, unit, x, frac)
            sats += s
            name = f"call {cid} ({'x'.join(map(str, shape))}, frac {call['in_frac']}): {what}"
            cases.append((name + (f" [{s} saturated]" if s else ""), cid, x, y, cyc))
    assert sats, "no case saturated the conv output"
    return cases


def test_conv_engine(export_dir: Path | None = None, lanes=None, words=1, pixel_lanes=1,
                     build: str = "conv_engine"):
    """pytest: unit 0 of a small real export, all its reachable calls (default: all lanes, one
    word per beat, one pixel per cycle)."""
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.rtl.conv_engine import ConvEngine, conv_engine_params

    export_dir = export_dir or small_export()
    qm = QuantModel.load(export_dir)
    p = conv_engine_params(qm, 0)
    dut = ConvEngine(**p, lanes=lanes, words=words, pixel_lanes=pixel_lanes)
    with np.load(export_dir / "golden" / "vectors.npz") as data:
        images = data["pixels"]
    _run(dut, build, real_cases(qm, 0, p["calls"], images, lanes, words, pixel_lanes), 4)


def synthetic_unit(seed: int = 7):
    """2 -> 5 channels, 3x3 stride 2 no padding, bias finer than some calls' accumulators, trn
    output (12 bits, saturates), maxpool 2/2 then LeakyReLU 0.1."""
    from types import SimpleNamespace

    from hrn_hw.export.ir import ActQ, ConvQ, PoolQ, UnitQ
    from hrn_hw.fixedpoint.fmt import Fmt

    rng = np.random.default_rng(seed)
    w_fmt, b_fmt, o_fmt = Fmt(10, 9), Fmt(12, 10), Fmt(12, 3, rounding="trn")
    weight = rng.integers(w_fmt.qmin, w_fmt.qmax + 1, (5, 2, 3, 3))
    weight[3] = 0                                        # a channel that is only its bias
    bias = rng.integers(b_fmt.qmin, b_fmt.qmax + 1, 5)
    conv = ConvQ(5, 3, 2, 0, weight, w_fmt, bias, b_fmt, o_fmt)
    unit = UnitQ(0, 2, [conv, PoolQ(2, 2), ActQ(6554, 16)], True)
    calls = [
        {"unit": 0, "source": "a", "in_shape": [3, 9, 8], "in_frac": 2, "in_width": 8},
        {"unit": 0, "source": "b", "in_shape": [2, 2, 1], "in_frac": -3, "in_width": 6},
        {"unit": 0, "source": "c", "in_shape": [1, 3, 5], "in_frac": 0, "in_width": 9},
        {"unit": 0, "source": "d", "in_shape": [4, 7, 7], "in_frac": 5, "in_width": 7},
    ]
    return SimpleNamespace(units=[unit]), unit, calls


# Small planes for multi-word streams: with 8 words per beat one beat spans several channel
# groups (a 7x3x3 map folds 18-word groups, a 6x1x1 map 2-word ones), so consecutive runs of a
# beat and consecutive beats fold into the same words.
SMALL_PLANE_CALLS = [
    {"unit": 0, "source": "e", "in_shape": [7, 3, 3], "in_frac": 1, "in_width": 8},
    {"unit": 0, "source": "f", "in_shape": [6, 1, 1], "in_frac": 0, "in_width": 5},
]


def test_conv_engine_pool(words=1, pixel_lanes=1, build: str = "conv_engine_pool"):
    """pytest: the synthetic unit with maxpool, 2 lanes, maps smaller than the kernel; with
    more than one word per beat also the small-plane calls."""
    qm, unit, calls = synthetic_unit()
    _synthetic_run(qm, unit, calls, words, pixel_lanes, build)


def synthetic_avgpool_unit(seed: int = 7):
    """The synthetic unit's conv (trn s12 output, saturates) and LeakyReLU 0.1, then avgpool
    3/1 (overlapping windows, divisor 9: the RTL's reciprocal multiply), on the synthetic calls
    plus a 2x15x13 map (a 5x4 pooled output)."""
    from hrn_hw.export.ir import PoolQ, UnitQ

    qm, unit, calls = synthetic_unit(seed)
    conv, _, act = unit.layers
    qm.units[0] = unit = UnitQ(0, 2, [conv, act, PoolQ(3, 1, "avgpool")], True)
    calls = calls + [{"unit": 0, "source": "g", "in_shape": [2, 15, 13], "in_frac": 1, "in_width": 8}]
    return qm, unit, calls


def test_conv_engine_avgpool(words=2, pixel_lanes=3, build: str = "conv_engine_avgpool_w2p3"):
    """pytest: the synthetic unit with LeakyReLU then avgpool 3/1, 2 lanes."""
    qm, unit, calls = synthetic_avgpool_unit()
    _synthetic_run(qm, unit, calls, words, pixel_lanes, build)


def _synthetic_run(qm, unit, calls, words, pixel_lanes, build):
    """A synthetic unit on 2 lanes: random, small, zero, max, min and one-hot maps of every call
    (with more than one word per beat also the small-plane calls)."""
    from hrn_hw.export.shapes import unit_out_shape
    from hrn_hw.rtl.conv_engine import ConvEngine, call_geometry, conv_engine_cycles

    if words > 1:
        calls += [dict(c) for c in SMALL_PLANE_CALLS]
    for c in calls:
        c["out_shape"] = list(unit_out_shape(unit, tuple(c["in_shape"])))
    lanes = 2
    assert any(call_geometry(unit, c, lanes)["align"] > 0 for c in calls)
    rng = np.random.default_rng(8)
    cases, sats = [], 0
    for cid, c in enumerate(calls):
        shape, w = tuple(c["in_shape"]), c["in_width"]
        lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
        cyc = conv_engine_cycles(unit, c, lanes, words, pixel_lanes)
        one = np.zeros(shape, np.int64)
        one[0, 0, -1] = hi
        for what, x in [("random", rng.integers(lo, hi + 1, shape)), ("random small", rng.integers(-3, 4, shape)),
                        ("all zero", np.zeros(shape, np.int64)), ("all max", np.full(shape, hi)),
                        ("all min", np.full(shape, lo)), ("one element at max", one)]:
            y, s = _golden(qm, 0, x, c["in_frac"])
            sats += s
            cases.append((f"call {cid} ({'x'.join(map(str, shape))} -> {'x'.join(map(str, c['out_shape']))}, "
                           f"frac {c['in_frac']}): {what}" + (f" [{s} saturated]" if s else ""), cid, x, y, cyc))
    assert sats, "no case saturated the conv output"
    dut = ConvEngine(unit, calls, lanes=lanes, words=words, pixel_lanes=pixel_lanes)
    _run(dut, build, cases, 3)

