"""Residue + stop + embedding accumulator (hrn_hw/rtl/residue.py) on Verilator: residues, sum
r^2, the stop decision and the embedding bit-exact with `hrn_hw.fixedpoint.ops.residue` and
`hrn_hw.golden.run`, cycles equal to `residue_cycles` / `embedding_cycles`, at W = 1 and at
W words per beat (`test_residue(words)`: h beats carry non-zero junk past s, which the block
must ignore; the monitor's and the embedding's words past s must be zero).

Real data: a small Pairwise-MNIST export (`simlib.small_export`, cached under sim/build/_fixture/);
the pytest side replays the golden model step by step on the golden vectors' pixels and hands
every step's h, selected unit, coefficients and residue to the simulation in an .npz file.
Extremes on the same build: h = 0, saturating residues, exact rounding ties, a non-zero h whose
residue is exactly zero (the stop fires), embedding saturation.
"""

from __future__ import annotations

import numpy as np

import cocotb

from simlib import pack_beats, params, record, run_dut, small_export, start, stream_frame, to_unsigned, unpack_beat

P = params()
N_REAL = 8            # golden-vector samples replayed in the simulation


# ---- pytest side: the fixture export and the golden replay ---------------------------------

def golden_steps(qm, pixels: np.ndarray):
    """Replay golden.run on each image: [(sample, [(h, sel, coef[m], r)], embedding)]."""
    from hrn_hw import golden
    from hrn_hw.export.ir import INPUT_FMT
    from hrn_hw.fixedpoint import ops
    from hrn_hw.fixedpoint.fmt import SatCounter, convert

    sat = SatCounter()
    out = []
    for n, img in enumerate(pixels):
        y, frac, hid = img[None].astype(np.int64), INPUT_FMT.frac, 0
        used = np.zeros(qm.num_units, dtype=bool)
        steps, acc = [], np.zeros(qm.s, dtype=np.int64)
        for k in range(qm.d):
            phi = golden.feature_hash(y, qm.hash_seeds[hid], qm.s)
            h = ops.normalise(phi, qm.norm_k, qm.h_fmt, sat)
            coef, energy = ops.project(h, qm.h_fmt, qm.bases, qm.basis_fmt, qm.coef_fmt, sat)
            allowed = ~used & qm.initialised
            sel, ok = ops.select(energy, allowed[None])
            if not ok[0]:
                break
            u = int(sel[0])
            r = ops.residue(h, qm.h_fmt, qm.bases[[u]], coef[:, u], qm.basis_fmt, qm.coef_fmt, qm.residue_fmt, sat)
            steps.append((h[0], u, coef[0, u], r[0]))
            acc += r[0]
            used[u] = True
            if k == qm.d - 1 or int(r[0] @ r[0]) < qm.stop_threshold or not (~used & qm.initialised).any():
                break
            y, frac, hid = golden.run_unit(qm, u, y, frac, sat), qm.units[u].out_fmt.frac, u + 1
        emb = convert(acc, qm.residue_fmt.frac, qm.emb_fmt)
        out.append((n, steps, emb))
    return out


# ---- cocotb side --------------------------------------------------------------------------

def fmts():
    from hrn_hw.fixedpoint.fmt import Fmt

    return {k: Fmt.from_dict(P[k]) for k in ("h_fmt", "b_fmt", "c_fmt", "r_fmt", "emb_fmt")}


def pack(words, width: int) -> int:
    """Words side by side in one value (the coefficient bus)."""
    return pack_beats(words, len(words), width)[0]


def row_padded(words, fill: int) -> np.ndarray:
    """A frame's words padded to whole beats with `fill` (the block must ignore it)."""
    W, s = P["words"], len(words)
    return np.concatenate([np.asarray(words, dtype=np.int64), np.full(-(-s // W) * W - s, fill, dtype=np.int64)])


async def residue_frame(dut, h, sel, coef, rng=None, in_gap=0.0, out_stall=0.0):
    """Stream one step's h (W words per beat, non-zero junk past s) with (sel, coef); return
    (r [s], stop, energy, cycles); the residue monitor's positions past s must be zero."""
    s, W = P["s"], P["words"]
    F = fmts()
    hw, rw = F["h_fmt"].width, F["r_fmt"].width
    dut.sel.value = int(sel)
    dut.coef.value = pack(coef, F["c_fmt"].width)
    r = np.full(-(-s // W) * W, 1 << 40, dtype=np.int64)

    def each_cycle(i):
        if i >= 1:      # sel / coef are sampled with the first h only: scramble them afterwards
            dut.sel.value = (int(sel) + 1) % max(2, P["M"])
            dut.coef.value = pack([~int(c) for c in coef], F["c_fmt"].width)
        if to_unsigned(dut.r_valid):
            row = to_unsigned(dut.r_index)
            r[row * W:(row + 1) * W] = unpack_beat(to_unsigned(dut.r_data), W, rw)

    (res,), cyc = await stream_frame(dut, pack_beats(row_padded(h, F["h_fmt"].qmax), W, hw), 1, rng, in_gap,
                                     out_stall, out_last=False, on_cycle=each_cycle,
                                     read_output=lambda: (r, bool(to_unsigned(dut.stop)), to_unsigned(dut.energy)))
    assert not r[s:].any(), f"residue monitor: non-zero words past s: {r[s:].tolist()}"
    return (r[:s], *res[1:], cyc)


async def finish(dut, rng=None, out_stall=0.0):
    """The finish command, then the embedding beats; returns (emb [s], cycles); the words past
    s must be zero."""
    s, W = P["s"], P["words"]
    F = fmts()
    ef = F["emb_fmt"]
    out, cyc = await stream_frame(dut, 1, -(-s // W), rng, 0.0, out_stall, in_port="fin", out_port="emb",
                                  read_output=lambda: unpack_beat(to_unsigned(dut.emb_data), W, ef.width, ef.signed))
    emb = np.array(out, dtype=np.int64).reshape(-1)
    assert not emb[s:].any(), f"embedding: non-zero words past s: {emb[s:].tolist()}"
    return emb[:s], cyc


def golden_frame(h, sel, coef):
    from hrn_hw.fixedpoint import ops

    F = fmts()
    bases = np.load(P["bases"])
    r = ops.residue(np.asarray(h, dtype=np.int64)[None], F["h_fmt"], bases[[sel]],
                    np.asarray(coef, dtype=np.int64)[None], F["b_fmt"], F["c_fmt"], F["r_fmt"])[0]
    return r


async def run_sample(dut, name, frames, rng=None, in_gap=0.0, out_stall=0.0, want_r=None, want_emb=None):
    """Frames [(h, sel, coef)] of one sample, then finish; checks everything against the golden."""
    from hrn_hw.fixedpoint.fmt import convert
    from hrn_hw.rtl.residue import embedding_cycles, residue_cycles

    F = fmts()
    s, T = P["s"], P["stop_threshold"]
    acc = np.zeros(s, dtype=np.int64)
    stats = {"sat": 0, "stop": 0}
    timed = rng is None
    for k, (h, sel, coef) in enumerate(frames):
        r, stop, energy, cyc = await residue_frame(dut, h, sel, coef, rng, in_gap, out_stall)
        gold = golden_frame(h, sel, coef)
        if want_r is not None:
            assert np.array_equal(gold, want_r[k]), f"{name}: replayed golden residue disagrees with ops.residue"
        bad = np.nonzero(r != gold)[0]
        assert not len(bad), f"{name} step {k}: {len(bad)} residues differ, first j={bad[0]}: rtl {r[bad[0]]} golden {gold[bad[0]]}"
        e_gold = int(gold @ gold)
        assert energy == e_gold, f"{name} step {k}: sum r^2 {energy} != golden {e_gold}"
        assert stop == (e_gold < T), f"{name} step {k}: stop {stop}, golden sum r^2 {e_gold} vs T {T}"
        model = residue_cycles(s, P["words"]) if timed else None
        record(f"{name} step {k}", True, cyc if timed else None, model)
        if timed:
            assert cyc == model, f"{name} step {k}: cycles {cyc} != model {model}"
        stats["sat"] += int(np.count_nonzero((gold == F["r_fmt"].qmax) | (gold == F["r_fmt"].qmin)))
        stats["stop"] += int(stop)
        acc += gold
    emb, cyc = await finish(dut, rng, out_stall)
    e_gold = convert(acc, F["r_fmt"].frac, F["emb_fmt"])
    if want_emb is not None:
        assert np.array_equal(e_gold, want_emb), f"{name}: replayed golden embedding disagrees with golden.run"
    bad = np.nonzero(emb != e_gold)[0]
    assert not len(bad), f"{name}: {len(bad)} embedding words differ, first j={bad[0]}: rtl {emb[bad[0]]} golden {e_gold[bad[0]]}"
    model = embedding_cycles(s, P["words"]) if timed else None
    record(f"{name} embedding", True, cyc if timed else None, model)
    if timed:
        assert cyc == model, f"{name}: embedding cycles {cyc} != model {model}"
    stats["emb_sat"] = int(np.count_nonzero((e_gold == F["emb_fmt"].qmax) | (e_gold == F["emb_fmt"].qmin)))
    dut._log.info("%s: %d steps, %d saturated residues, %d stops, %d saturated embedding words, bit-exact",
                  name, len(frames), stats["sat"], stats["stop"], stats["emb_sat"])
    return stats


@cocotb.test()
async def residue_real(dut):
    """Golden-vector images replayed step by step: residues, stop and embedding bit-exact."""
    await start(dut)
    z = np.load(P["real"])
    for n in range(int(z["count"])):
        k = int(z[f"steps{n}"])
        frames = [(z[f"h{n}_{t}"], int(z[f"sel{n}_{t}"]), z[f"coef{n}_{t}"]) for t in range(k)]
        want_r = [z[f"r{n}_{t}"] for t in range(k)]
        await run_sample(dut, f"image {n} (task {int(z[f'task{n}'])})", frames, want_r=want_r,
                         want_emb=z[f"emb{n}"])


def extreme_samples(rng):
    """[(name, frames)] of the extreme cases, on the export's bases."""
    F = fmts()
    hf, cf = F["h_fmt"], F["c_fmt"]
    bases = np.load(P["bases"])
    M, m, s = bases.shape
    one = 1 << cf.frac                                      # c = 1.0
    zero_c = np.zeros(m, dtype=np.int64)
    u = int(np.argmax(np.abs(bases).sum(axis=(1, 2))))     # a unit with a non-zero basis
    b0 = bases[u, 0]
    tie_c = np.array([one] + [0] * (m - 1))
    hmax = np.full(s, hf.qmax)
    samples = [
        ("h = 0, c = 0 (zero residue: stop)", [(np.zeros(s, dtype=np.int64), 0, zero_c)]),
        ("h = 0, c at the format limits", [(np.zeros(s, dtype=np.int64), u, np.array([cf.qmax, cf.qmin, cf.qmax][:m]))]),
        # r = h - B c with h = +max and c = -max: |r| far beyond the residue range
        ("saturating residues (+), twice: embedding saturates", [(hmax, u, np.full(m, cf.qmin))] * 2),
        ("saturating residues (-)", [(np.full(s, hf.qmin), u, np.full(m, cf.qmin))]),
        # c = (1.0, 0, ..): diff = h << fb+fc-fh - B_0 << fc, half an LSB of r wherever B_0 is odd
        ("exact rounding ties", [(rng.integers(-3000, 3000, s), u, tie_c)]),
        # h = floor(B_0 / 2) (B in frac fb, h in frac fh = fb - 1): every residue rounds to 0
        ("non-zero h, exact zero residue (stop fires)", [((b0 >> (F["b_fmt"].frac - hf.frac)), u, tie_c)]),
        ("three random steps (units 0, 1, 2)", [(rng.integers(-40000, 40000, s), t % M, rng.integers(-60000, 60000, m))
                                                for t in range(3)]),
    ]
    return samples


@cocotb.test()
async def residue_extremes(dut):
    """h = 0, saturating residues, rounding ties, a zero residue, embedding saturation."""
    await start(dut)
    F = fmts()
    rng = np.random.default_rng(11)
    total = {"sat": 0, "stop": 0, "emb_sat": 0}
    for name, frames in extreme_samples(rng):
        if name == "exact rounding ties":
            h, u, c = frames[0]
            bases = np.load(P["bases"])
            shift = F["b_fmt"].frac + F["c_fmt"].frac - F["r_fmt"].frac
            diff = (h << (F["b_fmt"].frac + F["c_fmt"].frac - F["h_fmt"].frac)) - bases[u, 0] * c[0]
            ties = int(np.count_nonzero(diff % (1 << shift) == (1 << (shift - 1))))
            assert ties > 10, f"only {ties} rounding ties in the tie case"
            dut._log.info("rounding ties: %d of %d residues sit exactly half an LSB off the grid", ties, len(h))
        st = await run_sample(dut, name, frames)
        for k in total:
            total[k] += st[k]
    assert total["sat"] > 0 and total["stop"] >= 2 and total["emb_sat"] > 0, f"extremes not reached: {total}"


@cocotb.test()
async def residue_backpressure(dut):
    """Input gaps, result and embedding stalls at random: still bit-exact."""
    await start(dut)
    rng = np.random.default_rng(12)
    z = np.load(P["real"])
    frames = [(z[f"h0_{t}"], int(z[f"sel0_{t}"]), z[f"coef0_{t}"]) for t in range(int(z["steps0"]))]
    await run_sample(dut, "stalled: image 0", frames, rng, 0.3, 0.5)
    for name, fr in extreme_samples(rng)[2:5]:
        await run_sample(dut, f"stalled: {name}", fr, rng, 0.3, 0.5)


def test_residue(words: int = 1):
    """pytest: the fixture export's bases and formats (s = 300, m = 3, h/basis/coef/residue
    18 bits, embedding s16), `words` per beat (a build of its own for W > 1)."""
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.rtl.residue import Residue, residue_params
    from simlib import BUILD_DIR

    qm = QuantModel.load(small_export())
    z = np.load(small_export() / "golden" / "vectors.npz")
    rp = residue_params(qm, words)
    name = "residue" if words == 1 else f"residue_w{words}"
    build = BUILD_DIR / name
    build.mkdir(parents=True, exist_ok=True)
    np.save(build / "bases.npy", qm.bases)
    data = {}
    picks = golden_steps(qm, z["pixels"][:N_REAL])
    for n, steps, emb in picks:
        assert np.array_equal(emb, z["embedding"][n]), "golden replay disagrees with golden.run's embedding"
        data[f"steps{n}"] = len(steps)
        data[f"task{n}"] = int(z["tasks"][n])
        data[f"emb{n}"] = emb
        for t, (h, u, c, r) in enumerate(steps):
            data[f"h{n}_{t}"], data[f"sel{n}_{t}"], data[f"coef{n}_{t}"], data[f"r{n}_{t}"] = h, u, c, r
    data["count"] = len(picks)
    np.savez(build / "real.npz", **data)
    dut = Residue(**rp)
    run_dut(dut, "residue", "test_residue",
            {"M": qm.num_units, "m": qm.m, "s": qm.s, "words": words, "stop_threshold": rp["stop_threshold"],
             **{k: rp[k].to_dict() for k in ("h_fmt", "b_fmt", "c_fmt", "r_fmt", "emb_fmt")},
             "bases": str(build / "bases.npy"), "real": str(build / "real.npz")}, build_name=name)
