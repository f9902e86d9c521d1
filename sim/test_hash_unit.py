"""Hash unit (hrn_hw/rtl/hash_unit.py) on Verilator: phi bit-exact with the golden
`hrn_hw.golden.feature_hash`, cycles equal to `hrn_hw.rtl.cycles.hash_unit_cycles`, at W = 1
and at W words per beat (`test_hash_unit(words)`: maps zero-padded to whole beats, phi words
past s must be zero).

cocotb tests (run inside the simulator) and `test_hash_unit` (pytest: generate, build, run).
Inputs are driven on the falling edge; the handshakes happen on the next rising edge.
"""

from __future__ import annotations

import numpy as np

import cocotb

from simlib import pack_beats, params, record, run_dut, start, stream_frame, to_unsigned, unpack_beat

P = params()


async def hash_frame(dut, y, seed, rng=None, in_gap=0.0, out_stall=0.0):
    """Stream map `y` (flat integers, W per beat, zero past n) with `seed`; return (phi [s],
    cycles from the first input handshake to the last output handshake, inclusive); phi words
    past s must be zero."""
    s, W, width = P["s"], P["words"], P["in_width"]
    dut.seed.value = int(seed)
    out, cyc = await stream_frame(dut, pack_beats(y, W, width), -(-s // W), rng, in_gap, out_stall, in_last=True,
                                  read_output=lambda: unpack_beat(to_unsigned(dut.out_data), W, 32))
    phi = np.array(out, dtype=np.int64).reshape(-1)
    assert not phi[s:].any(), f"phi words past s not zero: {phi[s:].tolist()}"
    return phi[:s], cyc


def load_cases(group):
    """The cases of `group` with their golden phi, written by the pytest side (`make_cases`).

    The golden hash (`hrn_hw.golden.feature_hash`, on `hrn_hw.reference.hashing`) imports torch, which
    takes seconds inside the simulator's embedded Python; so the pytest process evaluates it
    and hands the vectors over in an .npz file."""
    data = np.load(P["vectors"])
    return [(name, data[f"{name}.y"], int(data[f"{name}.seed"]), data[f"{name}.phi"])
            for g, name in P["cases"] if g == group]


def check(phi, want, what):
    bad = np.nonzero(phi != want)[0]
    assert not len(bad), f"{what}: {len(bad)} buckets differ, first {bad[0]}: rtl {phi[bad[0]]} golden {want[bad[0]]}"


async def timed_cases(dut, group, describe):
    """Every case of `group` unstalled: bit-exact phi, cycles = the cycle model's; `describe`
    (name, y, seed) is the log line's subject."""
    from hrn_hw.rtl.cycles import hash_unit_cycles

    await start(dut)
    for name, y, seed, want in load_cases(group):
        phi, cyc = await hash_frame(dut, y, seed)
        check(phi, want, name)
        model = hash_unit_cycles(len(y), P["s"], P["words"])
        record(f"{name} (n={len(y)})", True, cyc, model)
        assert cyc == model, f"{name}: cycles {cyc} != model {model}"
        dut._log.info("%s: bit-exact, %d cycles", describe(name, y, seed), cyc)


@cocotb.test()
async def hash_images(dut):
    """MNIST-sized random images (sparse patches and dense noise) under random and edge seeds:
    bit-exact phi, cycles = the cycle model's."""
    await timed_cases(dut, "images", lambda name, y, seed: f"{name} seed {seed:#010x}")


@cocotb.test()
async def hash_extremes(dut):
    """Map sizes 1 .. max_n and extreme values: all zero, all max, all min, one bright element."""
    await timed_cases(dut, "extremes", lambda name, y, seed: f"{name} (n={len(y)})")


@cocotb.test()
async def hash_backpressure(dut):
    """Input gaps and output stalls at random, frames back to back: phi stays bit-exact."""
    await start(dut)
    rng = np.random.default_rng(3)
    for name, y, seed, want in load_cases("stalled"):
        phi, _ = await hash_frame(dut, y, seed, rng, in_gap=0.3, out_stall=0.4)
        check(phi, want, name)
        record(f"{name} (n={len(y)}, random stalls)", True)


# ---- pytest side ------------------------------------------------------------------------------

def make_cases(s, max_n, image_n, lo, hi, words=1):
    """[(group, name, y, seed)]: the maps every cocotb test above streams; with W = `words` > 1
    also maps of W - 1, W + 1 and image_n + 1 elements (a last beat part full)."""
    rng = np.random.default_rng(1)
    cases = []
    seeds = [0, 0xFFFFFFFF, 1, 0x80000000] + [int(x) for x in rng.integers(0, 2**32, 4)]
    for t, seed in enumerate(seeds):
        pix = rng.integers(0, 256, image_n)
        y = pix if t % 2 else np.where(rng.random(image_n) < 0.2, pix, 0)
        cases.append(("images", f"image{t}", y, seed))
    ext = [
        ("all_zero", np.zeros(max_n, dtype=np.int64)),
        ("all_max", np.full(max_n, hi)),
        ("all_min", np.full(max_n, lo)),
        ("one_bright", np.eye(1, max_n, int(rng.integers(max_n)), dtype=np.int64)[0] * hi),
        ("n1", np.array([hi])),
        ("n2", np.array([lo, hi])),
        ("n_s_minus_1", rng.integers(lo, hi + 1, s - 1)),
        ("n_s", rng.integers(lo, hi + 1, s)),
        ("n_s_plus_1", rng.integers(lo, hi + 1, s + 1)),
        ("random_max_n", rng.integers(lo, hi + 1, max_n)),
    ]
    cases += [("extremes", name, y, int(rng.integers(0, 2**32))) for name, y in ext]
    for t in range(4):
        n = int(rng.integers(1, max_n + 1))
        cases.append(("stalled", f"stalled{t}", rng.integers(lo, hi + 1, n), int(rng.integers(0, 2**32))))
    if words > 1:
        cases += [("extremes", f"partial{n}", rng.integers(lo, hi + 1, n), int(rng.integers(0, 2**32)))
                  for n in (words - 1, words + 1, image_n + 1)]
    return cases


def write_vectors(path, cases, s):
    """Golden phi of every case (hrn_hw.golden.feature_hash) into an .npz file."""
    from hrn_hw.golden import feature_hash

    arrays = {}
    for _, name, y, seed in cases:
        y = np.asarray(y, dtype=np.int64)
        arrays[f"{name}.y"] = y
        arrays[f"{name}.seed"] = np.int64(seed)
        arrays[f"{name}.phi"] = feature_hash(y.reshape(1, -1, 1, 1), seed, s)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_hash_unit(words: int = 1):
    """pytest: the hash unit at the paper config's s = 300, 16-bit signed maps of up to 1024
    elements (a unit output; u8 pixels are a subset), `words` per beat (a build of its own for
    W > 1), against the golden hash."""
    from hrn_hw.fixedpoint.fmt import Fmt
    from hrn_hw.rtl import HashUnit

    from simlib import BUILD_DIR

    s, fmt, max_n = 300, Fmt(16, 10), 1024
    name = "hash_unit" if words == 1 else f"hash_unit_w{words}"
    cases = make_cases(s, max_n, 784, fmt.qmin, fmt.qmax, words)
    vectors = write_vectors(BUILD_DIR / name / "vectors.npz", cases, s)
    dut = HashUnit(s=s, in_width=fmt.width, in_signed=True, max_n=max_n, words=words)
    run_dut(dut, "hash_unit", "test_hash_unit",
            {"s": s, "words": words, "in_width": fmt.width, "vectors": str(vectors),
             "cases": [(g, n) for g, n, _, _ in cases]}, build_name=name)
