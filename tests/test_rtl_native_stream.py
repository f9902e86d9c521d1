"""The native testbench's stream mode (hrn_hw/rtl/native_sim.py, for the pipelined top level,
rtl.json knobs in_flight >= 2) on a mock top level with the pipelined top's ports: 2 pixels a
beat, 15 pixels a sample (8 beats, the last padded), s = 3 (2 embedding beats), d = 2,
2 classes, 2 tasks. The mock takes a sample's beats, keeps up to 4 taken samples in slots, each
ready a fixed latency after its last beat (2 cycles when its first pixel is even, 14 when odd,
so samples leave out of input order), and sends one ready sample at a time: its embedding
(word j = pixel sum + j - 1500) and its logits (task * 100 + class - first pixel) side by side,
the last logit after the last embedding beat, tagged with the sample's index mod 2^16, route
(first pixel - 128, last pixel - 300) with the logits. First pixels 253 to 255 make it misbehave
(the other tests' samples have none).

Unstalled, the mock never stalls the input and its outputs never collide, so sample i's first
pixel is taken at cycle 8 i, its last logit at 8 i + 11 + latency: cycles 12 + latency. The
stream of 65,600 samples wraps the 16-bit tags; the stalled stream runs at the same time. The
same Verilog under a sequential rtl.json (no in_flight) runs in the one-sample-at-a-time mode:
same values and cycles, each sample starting two cycles after the last one's last logit. The
misbehaving samples (out_last misplaced, a route that changes, a sample that never leaves) give
one-line errors naming the sample. One build, g++ -O0 (a few seconds)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hrn_hw.hls.csim import ToolError
from hrn_hw.rtl import native_sim

W, PIXELS, S, D, CLASSES, TASKS = 2, 15, 3, 2, 2, 2
EMB_WIDTH, OUT_WIDTH, ROUTE_WIDTH, SLOTS = 16, 16, 10, 4
BEATS, EMB_BEATS = -(-PIXELS // W), -(-S // W)
LATENCY = (2, 14)                       # by the parity of the sample's first pixel
QM = SimpleNamespace(emb_fmt=SimpleNamespace(width=EMB_WIDTH, signed=True), d=D, s=S, max_classes=CLASSES,
                     heads=list(range(TASKS)), input_shape=(1, PIXELS))


class MockPipelinedTop(wiring.Component):
    """Up to 5 samples at once (4 taken, 1 being taken), out of order. Faults by the sample's first
    pixel: 255 out_last on the first logit, 253 the route changing within the logits, 254 no output."""

    def __init__(self):
        super().__init__({
            "task": In(1), "in_valid": In(1), "in_ready": Out(1), "in_data": In(8 * W),
            "emb_valid": Out(1), "emb_ready": In(1), "emb_data": Out(W * EMB_WIDTH), "emb_last": Out(1),
            "emb_id": Out(16), "out_valid": Out(1), "out_ready": In(1), "out_data": Out(signed(OUT_WIDTH)),
            "out_last": Out(1), "out_id": Out(16), "route": Out(D * ROUTE_WIDTH), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        pix = [self.in_data[8 * p:8 * p + 8] for p in range(W)]
        # the sample being taken
        rx_beat, rx_sum, rx_p0, rx_task = Signal(range(BEATS)), Signal(12), Signal(8), Signal(1)
        next_tag = Signal(16)
        # the taken samples
        valid = Array(Signal(name=f"valid{k}") for k in range(SLOTS))
        timer = Array(Signal(range(max(LATENCY) + 1), name=f"timer{k}") for k in range(SLOTS))
        tag = Array(Signal(16, name=f"tag{k}") for k in range(SLOTS))
        task = Array(Signal(1, name=f"task{k}") for k in range(SLOTS))
        total = Array(Signal(12, name=f"sum{k}") for k in range(SLOTS))
        p0 = Array(Signal(8, name=f"p0_{k}") for k in range(SLOTS))
        plast = Array(Signal(8, name=f"plast{k}") for k in range(SLOTS))
        free, any_free = Signal(range(SLOTS)), Signal()
        ready, any_ready = Signal(range(SLOTS)), Signal()
        for k in reversed(range(SLOTS)):                # the lowest free / ready slot
            with m.If(~valid[k]):
                m.d.comb += [free.eq(k), any_free.eq(1)]
            due = valid[k] & (timer[k] == 0)
            with m.If(due & (p0[k] != 254)):
                m.d.comb += [ready.eq(k), any_ready.eq(1)]
        for k in range(SLOTS):
            with m.If(timer[k] != 0):
                m.d.sync += timer[k].eq(timer[k] - 1)

        m.d.comb += self.in_ready.eq((rx_beat != BEATS - 1) | any_free)
        beat_sum = pix[0] + pix[1]
        with m.If(self.in_valid & self.in_ready):
            with m.If(rx_beat == 0):
                m.d.sync += [rx_p0.eq(pix[0]), rx_task.eq(self.task), rx_sum.eq(beat_sum)]
            with m.Else():
                m.d.sync += rx_sum.eq(rx_sum + beat_sum)
            with m.If(rx_beat == BEATS - 1):
                m.d.sync += [rx_beat.eq(0), next_tag.eq(next_tag + 1)]
                for k in range(SLOTS):          # (writes through an Array index: case statements Verilator flags)
                    with m.If(free == k):
                        m.d.sync += [valid[k].eq(1), tag[k].eq(next_tag), task[k].eq(rx_task),
                                     total[k].eq(rx_sum + beat_sum), p0[k].eq(rx_p0),
                                     plast[k].eq(pix[(PIXELS - 1) % W]),
                                     timer[k].eq(Mux(rx_p0[0], LATENCY[1], LATENCY[0]))]
            with m.Else():
                m.d.sync += rx_beat.eq(rx_beat + 1)

        # the sample being sent: embedding and logits at once
        active, sel = Signal(), Signal(range(SLOTS))
        emb_i, out_i, emb_fin, out_fin = Signal(range(EMB_BEATS)), Signal(range(CLASSES)), Signal(), Signal()
        words = []
        for j in range(W):
            word, idx = Signal(signed(EMB_WIDTH), name=f"emb_word{j}"), emb_i * W + j
            m.d.comb += word.eq(Mux(idx < S, total[sel] + idx - 1500, 0))
            words.append(word)
        route0, route1 = Signal(signed(ROUTE_WIDTH)), Signal(signed(ROUTE_WIDTH))
        m.d.comb += [
            self.emb_valid.eq(active & ~emb_fin), self.emb_data.eq(Cat(*words)), self.emb_id.eq(tag[sel]),
            self.emb_last.eq(emb_i == EMB_BEATS - 1),
            self.out_valid.eq(active & ~out_fin & ((out_i != CLASSES - 1) | emb_fin)),   # embedding first
            self.out_data.eq(task[sel] * 100 + out_i - p0[sel]),
            self.out_id.eq(tag[sel]), self.out_last.eq((out_i == CLASSES - 1) | (p0[sel] == 255)),
            route0.eq(p0[sel] - 128 + Mux(p0[sel] == 253, out_i, 0)), route1.eq(plast[sel] - 300),
            self.route.eq(Cat(route0, route1)),
            self.busy.eq(active | Cat(*valid).any() | (rx_beat != 0)),
        ]
        emb_hs, out_hs = self.emb_valid & self.emb_ready, self.out_valid & self.out_ready
        with m.If(~active):
            with m.If(any_ready):
                m.d.sync += [active.eq(1), sel.eq(ready), emb_i.eq(0), out_i.eq(0), emb_fin.eq(0), out_fin.eq(0)]
        with m.Else():
            with m.If(emb_hs):
                with m.If(self.emb_last):
                    m.d.sync += emb_fin.eq(1)
                with m.Else():
                    m.d.sync += emb_i.eq(emb_i + 1)
            with m.If(out_hs):
                with m.If(self.out_last):
                    m.d.sync += out_fin.eq(1)
                with m.Else():
                    m.d.sync += out_i.eq(out_i + 1)
            with m.If((emb_fin | (emb_hs & self.emb_last)) & (out_fin | (out_hs & self.out_last))):
                m.d.sync += active.eq(0)
                for k in range(SLOTS):
                    with m.If(sel == k):
                        m.d.sync += valid[k].eq(0)
        return m


def _export(folder, in_flight=3):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hrn_top.v").write_text(verilog.convert(MockPipelinedTop(), name="hrn_top", emit_src=False))
    ports = {"in_data": 8 * W, "task": 1, "emb_data": W * EMB_WIDTH, "out_data": OUT_WIDTH, "route": [D, ROUTE_WIDTH],
             "out_id": 16}
    knobs = {"words": W, "in_flight": in_flight} if in_flight else {"words": W}
    (folder / "rtl.json").write_text(json.dumps({"top": "hrn_top", "knobs": knobs, "ports": ports}))
    return folder


def _cases(n, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, PIXELS))
    pixels[:, 0] = np.where(pixels[:, 0] >= 253, pixels[:, 0] - 3, pixels[:, 0])     # no faults
    tasks = rng.integers(0, TASKS, n)
    return {"pixels": pixels, "tasks": tasks, "model_cycles": 12 + np.array(LATENCY)[pixels[:, 0] % 2]}


def _expected(cases):
    px, tasks = np.asarray(cases["pixels"]), np.asarray(cases["tasks"])
    emb = px.sum(1)[:, None] + np.arange(S) - 1500
    logits = tasks[:, None] * 100 + np.arange(CLASSES) - px[:, :1]
    route = np.stack([px[:, 0] - 128, px[:, -1] - 300], 1)
    return emb, logits, route


def _check_values(cases, out, rows):
    emb, logits, route = _expected(cases)
    assert np.array_equal(out["embedding"], emb[rows])
    assert np.array_equal(out["logits"], logits[rows])
    assert np.array_equal(out["route"], route[rows])


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    root = tmp_path_factory.mktemp("native_stream")
    return root, _export(root / "rtl"), root / "build"


def test_rtl_params_reads_the_stream_mode(mock, tmp_path):
    _, rtl, _ = mock
    assert native_sim.rtl_params(rtl, QM) == {"words": W, "s": S, "emb_width": EMB_WIDTH, "emb_signed": 1,
                                              "classes": CLASSES, "d": D, "route_width": ROUTE_WIDTH, "tasks": TASKS,
                                              "out_width": OUT_WIDTH, "n_pixels": PIXELS, "stream": 1}
    summary = json.loads((rtl / "rtl.json").read_text())
    del summary["ports"]["out_id"]
    (tmp_path / "rtl.json").write_text(json.dumps(summary))
    with pytest.raises(ToolError, match="do not fit the export's model"):
        native_sim.rtl_params(tmp_path, QM)


def test_stream_mode_tags_order_and_timing(mock):
    _, rtl, build = mock
    n, stalled = 65600, 300                                             # the tags wrap
    cases = _cases(n, 1)
    out = native_sim.simulate(rtl, QM, cases, stalled=stalled, jobs=4, build_root=build, opt="-O0")
    assert len(out["cycles"]) == n + stalled
    assert not out["stalled"][:n].any() and out["stalled"][n:].all()
    _check_values(cases, out, np.concatenate([np.arange(n), np.arange(stalled)]))
    latency = np.array(LATENCY)[np.asarray(cases["pixels"])[:, 0] % 2]
    assert np.array_equal(out["start"][:n], 8 * np.arange(n))
    assert np.array_equal(out["end"][:n], 8 * np.arange(n) + 11 + latency)
    assert np.array_equal(out["cycles"][:n], 12 + latency)
    assert (np.diff(out["end"][:n]) < 0).any()                          # some samples overtake others
    for key in ("cycles", "start", "end"):
        assert out[key].dtype == np.int64 and (out[key][n:] == -1).all()


def test_sequential_mode_on_the_same_verilog(mock):
    root, rtl, build = mock
    seq = _export(root / "rtl_sequential", in_flight=None)            # same Verilog: the build is cached
    cases = _cases(12, 2)
    out = native_sim.simulate(seq, QM, cases, stalled=3, jobs=1, build_root=build, opt="-O0")
    assert out["build_seconds"] == 0.0
    _check_values(cases, out, np.concatenate([np.arange(12), np.arange(3)]))
    cycles = 12 + np.array(LATENCY)[np.asarray(cases["pixels"])[:, 0] % 2]
    assert np.array_equal(out["cycles"][:12], cycles)
    assert np.array_equal(out["start"][:12], np.concatenate([[0], np.cumsum(cycles + 1)[:-1]]))
    assert np.array_equal(out["end"][:12], out["start"][:12] + cycles - 1)
    assert (out["start"][12:] == -1).all() and (out["end"][12:] == -1).all()


@pytest.mark.parametrize("first, message", [
    (255, "sample 3: out_last misplaced"),
    (253, "sample 3: route changed within its logits"),
    (254, "stream of 6 samples does not finish within"),
])
def test_stream_mode_errors_name_the_sample(mock, first, message):
    _, rtl, build = mock
    cases = _cases(6, 3)
    cases["pixels"][3, 0] = first
    with pytest.raises(ToolError, match=message) as exc:
        native_sim.simulate(rtl, QM, cases, build_root=build, opt="-O0")
    assert "\n" not in str(exc.value)
