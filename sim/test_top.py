"""Top level (hrn_hw/rtl/top.py) on Verilator: embedding, route and logits of whole samples
bit-exact with `hrn_hw.golden.run`, and the measured cycles of every sample equal to the cycle
model `hrn_hw.rtl.latency.sample_cycles`.

This module is the pytest side: it runs the golden model on the samples (`build_cases`) and
hands the cases to `simulate_top`, which writes pixels, task ids, expected outputs and modelled
cycles into `cases<i>.npz` in the build directory. The cocotb side lives in the package,
`hrn_hw/rtl/cocotb_top.py` (the cocotb test `top_run` and `simulate_top`, also the `--sim
cocotb` path of `hrn-hw verify --against rtl`): it streams the cases through the DUT, first
every sample with the input never idle and the outputs never stalled, then some again under
random input gaps and output stalls, and writes what the RTL produced (and the cycles) into
`outputs<i>.npz`; `check_top` compares every bit with `hrn_hw.verify.compare` (the check `hrn-hw
verify --against rtl` makes) and the cycles with the model. Run on an export by `make sim`
(`sim/run_export.py`), and by `make test` on a small model (`tests/test_rtl_top.py`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hrn_hw.rtl.cocotb_top import SEQUENTIAL, simulate_top


def build_cases(qm, pixels: np.ndarray, tasks: np.ndarray, names: list, knobs=None) -> dict:
    """Golden outputs and modelled cycles of the samples, as the simulation reads them."""
    from hrn_hw import golden
    from hrn_hw.dataflow.stream import stream_schedule
    from hrn_hw.rtl.rtlsim import make_cases

    knobs = knobs or SEQUENTIAL
    res = golden.run(qm, pixels, tasks)
    return make_cases(qm, pixels, tasks, names, {"embedding": res.embedding, "routes": res.routes,
                                                 "logits": res.logits}, knobs, schedule=stream_schedule)


def extreme_inputs(qm) -> tuple[np.ndarray, list]:
    """All 0, all 255, one bright pixel (centre), one bright pixel (corner)."""
    shape = tuple(qm.input_shape)
    zero, full = np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)
    centre, corner = zero.copy(), zero.copy()
    centre[0, shape[1] // 2, shape[2] // 2] = 255
    corner[-1, -1, -1] = 255
    return np.stack([zero, full, centre, corner]), ["all 0", "all 255", "one bright pixel (centre)",
                                                    "one bright pixel (corner)"]


def check_top(cases: dict, out: dict) -> None:
    """Every run bit-exact with the golden model, every unstalled run's cycles equal to the model."""
    from hrn_hw.verify import compare

    stalled = out["stalled"]
    free = {"embedding": out["embedding"][~stalled], "routes": out["route"][~stalled],
            "logits": out["logits"][~stalled]}
    want = {"embedding": cases["embedding"], "routes": cases["route"], "logits": cases["logits"]}
    res = compare(want, free)
    assert res["mismatches"] == 0, f"RTL differs from the golden model: {res}"
    k = int(stalled.sum())
    res = compare({key: v[:k] for key, v in want.items()},
                  {"embedding": out["embedding"][stalled], "routes": out["route"][stalled],
                   "logits": out["logits"][stalled]})
    assert res["mismatches"] == 0, f"RTL differs from the golden model under stalls: {res}"
    bad = np.nonzero(out["cycles"][~stalled] != cases["model_cycles"])[0]
    assert not len(bad), (f"cycles differ from the model for samples {bad[:8].tolist()}: measured "
                          f"{out['cycles'][~stalled][bad[:8]].tolist()}, model {cases['model_cycles'][bad[:8]].tolist()}")


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


def fixture_cases(qm, count: int, knobs=None) -> dict:
    """The fixture export's first `count` golden-vector images plus the extreme inputs (cycles
    modelled at `knobs`, the defaults when None)."""
    from simlib import small_export

    z = np.load(small_export() / "golden" / "vectors.npz")
    ext, ext_names = extreme_inputs(qm)
    pixels = np.concatenate([z["pixels"][:count], ext])
    tasks = np.concatenate([z["tasks"][:count], np.arange(len(ext)) % len(qm.heads)])
    names = [f"golden vector {n} (task {int(t)})" for n, t in enumerate(z["tasks"][:count])] + ext_names
    return build_cases(qm, pixels, tasks, names, knobs)


def test_top():
    """pytest: the fixture export (50 golden-vector images of 5 tasks) and the extreme inputs."""
    from hrn_hw.export.ir import QuantModel
    from simlib import small_export

    from simlib import BUILD_DIR

    qm = QuantModel.load(small_export())
    cases = fixture_cases(qm, 50)
    check_top(cases, simulate_top(qm, cases, BUILD_DIR / "top"))


def test_top_preset():
    """pytest: the ECP5-85F preset's knobs (`hrn-hw export --preset ecp5-85f`) on the fixture
    export's first 20 golden vectors and the extreme inputs, with stalls: bit-exact, and the
    cycle model at those knobs equal to the measured cycles."""
    from hrn_hw.export.ir import QuantModel
    from hrn_hw.rtl.knobs import preset
    from simlib import BUILD_DIR, small_export

    qm = QuantModel.load(small_export())
    knobs = preset("ecp5-85f").with_(in_flight=1)      # the preset's blocks, one sample at a time
    cases = fixture_cases(qm, 20, knobs)
    check_top(cases, simulate_top(qm, cases, BUILD_DIR / "top_preset", knobs=knobs, stalled=3))


def test_top_stop_and_runout():
    """pytest: a variant of the fixture model with units 2 and 3 uninitialised and tau_d at the
    median first residue (50 golden-vector images of 5 tasks and the extreme inputs): samples
    stop early on tau_d, others run out of initialised units."""
    from hrn_hw.export.ir import QuantModel
    from simlib import BUILD_DIR
    from simlib import small_export

    base = QuantModel.load(small_export())
    z = np.load(small_export() / "golden" / "vectors.npz")
    qm = routing_variant(base, [2, 3], 0.5, z["pixels"][:50])
    cases = fixture_cases(qm, 50)
    lengths = (cases["route"] >= 0).sum(axis=1)
    n_init = int(qm.initialised.sum())
    assert ((lengths < n_init) & (lengths > 0)).any(), "no sample stops early on tau_d"
    assert (lengths == n_init).any() and n_init < qm.d, "no sample runs out of initialised units"
    check_top(cases, simulate_top(qm, cases, BUILD_DIR / "top_variant", stalled=3))
