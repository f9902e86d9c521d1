"""Head engine (hrn_hw/rtl/head.py) on Verilator: logits bit-exact with `hrn_hw.golden.run_head`
(zero-padded as in `hrn_hw.golden.run`), cycles equal to `head_cycles`, at W = 1 and at W
words per beat (`test_head(words)`: the embedding beats carry non-zero junk past s, which the
engine must ignore).

The build holds the fixture export's five heads (300-60-10-2, s16 formats; see
`simlib.small_export`) plus one synthetic head (task 5: 300-23-3) with narrow,
truncating formats, a bias finer than the products, a ReLU-like slope and a 3-group hidden
layer whose last group is partial; it makes the largest head 3 classes, so the real heads'
logits are padded with a zero. The pytest side computes every expected logit vector with the
golden model and hands them over in an .npz file.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import cocotb

from simlib import pack_beats, params, record, run_dut, start, stream_frame

P = params()


def embedding_beats(emb) -> list:
    """The embedding as beats of W words, non-zero junk past s (the engine must ignore it)."""
    s, W, width = P["s"], P["words"], P["emb_width"]
    junk = np.full(-(-s // W) * W - s, (1 << (width - 1)) - 1, dtype=np.int64)
    return pack_beats(np.concatenate([np.asarray(emb[:s], dtype=np.int64), junk]), W, width)


async def head_run(dut, emb, task, rng=None, in_gap=0.0, out_stall=0.0):
    """Stream one embedding (W words per beat) with its task id; return (logits [C], cycles)."""
    dut.task.value = int(task)

    def scramble(i):
        if i >= 1:        # the task id is sampled with the first word only
            dut.task.value = (int(task) + 1) % P["tasks"]

    out, cyc = await stream_frame(dut, embedding_beats(emb), P["C"], rng, in_gap, out_stall, on_cycle=scramble)
    return np.array(out, dtype=np.int64), cyc


async def run_cases(dut, prefix, rng=None, in_gap=0.0, out_stall=0.0, every=1):
    from hrn_hw.rtl.head import head_cycles

    z = np.load(P["cases"])
    sizes = P["sizes"]
    for n in range(0, int(z["count"]), every):
        name, task = f"{prefix}{str(z[f'name{n}'])}", int(z[f"task{n}"])
        logits, cyc = await head_run(dut, z[f"emb{n}"], task, rng, in_gap, out_stall)
        want = z[f"logits{n}"]
        assert np.array_equal(logits, want), f"{name}: logits rtl {logits.tolist()} golden {want.tolist()}"
        model = head_cycles(P["s"], sizes[task], P["C"], P["lanes"], P["words"]) if rng is None else None
        record(name, True, cyc if rng is None else None, model)
        if rng is None:
            assert cyc == model, f"{name}: cycles {cyc} != model {model}"
        dut._log.info("%s: task %d logits %s bit-exact%s", name, task, logits.tolist(),
                      f", {cyc} cycles" if rng is None else "")


@cocotb.test()
async def head_cases(dut):
    """Golden-vector embeddings of every task, extreme embeddings, the synthetic head."""
    await start(dut)
    await run_cases(dut, "")


@cocotb.test()
async def head_backpressure(dut):
    """Input gaps and output stalls at random: still bit-exact."""
    await start(dut)
    await run_cases(dut, "stalled: ", np.random.default_rng(3), 0.3, 0.5, every=4)


def synthetic_head(s: int, seed: int = 7):
    """Task 5: 300-23-3, narrow truncating formats that saturate, bias finer than x*w."""
    from hrn_hw.export.ir import ActQ, DenseQ, HeadQ
    from hrn_hw.fixedpoint.fmt import Fmt

    rng = np.random.default_rng(seed)
    w0f, b0f, o0f = Fmt(12, 13), Fmt(10, 4), Fmt(8, 3, rounding="trn")
    w1f, b1f, o1f = Fmt(16, 12), Fmt(16, 30), Fmt(10, 2)
    l0 = DenseQ(rng.integers(w0f.qmin, w0f.qmax + 1, (s, 23)), w0f, rng.integers(b0f.qmin, b0f.qmax + 1, 23),
                b0f, o0f, ActQ(13107, 16))
    l1 = DenseQ(rng.integers(w1f.qmin, w1f.qmax + 1, (23, 3)), w1f, rng.integers(b1f.qmin, b1f.qmax + 1, 3),
                b1f, o1f, None)
    return HeadQ(5, "synthetic", [0, 1, 2], [l0, l1])


def test_head(words: int = 1):
    """pytest: the fixture export's heads plus the synthetic one, LANES lanes (default),
    `words` per beat and memory row (a build of its own for W > 1)."""
    from simlib import small_export

    from hrn_hw import golden
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.fixedpoint.fmt import SatCounter
    from hrn_hw.rtl.head import LANES, HeadEngine
    from simlib import BUILD_DIR

    qm = QuantModel.load(small_export())
    z = np.load(small_export() / "golden" / "vectors.npz")
    qm2 = dataclasses.replace(qm, heads=qm.heads + [synthetic_head(qm.s)])
    T, C, s, ef = len(qm2.heads), qm2.max_classes, qm.s, qm.emb_fmt
    rng = np.random.default_rng(9)
    cases = []
    for t in range(len(qm.heads)):           # golden-vector embeddings of every task
        rows = np.nonzero(z["tasks"] == t)[0][:2]
        for r in rows:
            cases.append((f"image {r} task {t}", z["embedding"][r], t, z["logits"][r]))
    extremes = [("embedding 0 (bias only)", np.zeros(s, dtype=np.int64)),
                ("embedding all +max", np.full(s, ef.qmax)), ("embedding all min", np.full(s, ef.qmin)),
                ("embedding +-max alternating", np.where(np.arange(s) % 2, ef.qmax, ef.qmin)),
                ("embedding random full range", rng.integers(ef.qmin, ef.qmax + 1, s))]
    for e, (name, emb) in enumerate(extremes):
        for t in (range(T) if e < 2 else (e % (T - 1), T - 1)):     # every task on two of them
            cases.append((f"{name}, task {t}", emb, t, None))
    for k in range(3):
        cases.append((f"golden-vector embedding {k}, synthetic head", z["embedding"][k], T - 1, None))
    data, sat_logits = {}, 0
    for n, (name, emb, t, want_padded) in enumerate(cases):
        sat = SatCounter()
        out = golden.run_head(qm2, t, np.asarray(emb, dtype=np.int64)[None], sat)[0]
        last = qm2.heads[t].layers[-1].out_fmt
        sat_logits += int(np.count_nonzero((out == last.qmax) | (out == last.qmin)))
        padded = np.zeros(C, dtype=np.int64)
        padded[:len(out)] = out
        if want_padded is not None:
            assert np.array_equal(padded[:len(want_padded)], want_padded), f"{name}: run_head != golden.run logits"
        data[f"name{n}"], data[f"emb{n}"], data[f"task{n}"], data[f"logits{n}"] = name, emb, t, padded
    data["count"] = len(cases)
    assert sat_logits > 0, "no case saturates the logits"
    name = "head" if words == 1 else f"head_w{words}"
    build = BUILD_DIR / name
    build.mkdir(parents=True, exist_ok=True)
    np.savez(build / "cases.npz", **data)
    sizes = [[(int(l.weight.shape[0]), int(l.weight.shape[1])) for l in h.layers] for h in qm2.heads]
    dut = HeadEngine(qm2.heads, ef, s, LANES, words)
    run_dut(dut, "head", "test_head",
            {"s": s, "C": C, "tasks": T, "lanes": LANES, "words": words, "emb_width": ef.width, "sizes": sizes,
             "cases": str(build / "cases.npz")}, build_name=name)
