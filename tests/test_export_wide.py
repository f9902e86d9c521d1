"""Hash energies beyond int64 (issue 19): a model whose worst-case hash energy needs more than 63
bits (12 full-size channels hashed into 300 buckets) exports, and golden == C-sim bit for bit;
the golden normalisation is exact there (Python integers) and equals the int64 path below it."""

from __future__ import annotations

import json

import numpy as np

from hrn_hw.cli import main
from hrn_hw.export.ir import QuantModel
from hrn_hw.fixedpoint.fmt import Fmt
from hrn_hw.fixedpoint.ops import convert, energy_width, inv_sqrt, normalise, norm_shift

WIDE = {"name": "wide", "scenario": "pairwise-mnist", "hrn": {"hash_size": 300, "basis_size": 2, "depth": 2},
        "units": [{"count": 2, "in_channels": 1,
                   "layers": [{"type": "conv", "out_channels": 12, "kernel": 3, "stride": 1, "padding": 1},
                              {"type": "relu"}]}],
        "training": {"epochs": [1], "batch_size": 16}}


def test_normalise_is_exact_beyond_int64():
    h_fmt = Fmt(18, 16, True)
    rng = np.random.default_rng(0)
    phi = rng.integers(-(1 << 31), 1 << 31, size=(3, 300), dtype=np.int64)
    k = norm_shift(2 * 31 + 9, h_fmt)
    energies = [sum(int(v) * int(v) for v in row) for row in phi]
    assert max(energies) >= 1 << 63 and energy_width(k, h_fmt) > 64
    inv = np.array([inv_sqrt(e, k) for e in energies], dtype=np.int64)   # the definition, exact
    assert np.array_equal(normalise(phi, k, h_fmt), convert(phi * inv[:, None], k, h_fmt))
    wrapped = np.einsum("ij,ij->i", phi, phi)         # what int64 arithmetic would have used
    assert any(int(w) != e for w, e in zip(wrapped, energies))
    small = phi >> 8                                  # energies below 2**63: the int64 path
    assert np.array_equal(normalise(small, k, h_fmt), normalise(small.astype(object), k, h_fmt))
    assert energy_width(norm_shift(63, h_fmt), h_fmt) == 64


def _train_and_export(tmp_path, data: dict, limit: int):
    """Train `data` briefly on Pairwise-MNIST and export it without RTL: (export folder, model)."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps(data))
    model, out = tmp_path / "m.pt", tmp_path / "export"
    assert main(["train", "--scenario", "pairwise-mnist", "--config", str(cfg), "--limit", str(limit), "--epochs", "1",
                 "--out", str(model)]) == 0
    assert main(["export", str(model), "-o", str(out), "--golden", "4", "--eval-limit", "40", "--calib", "32",
                 "--no-rtl"]) == 0
    return out, QuantModel.load(out)


def test_wide_energy_model_exports_and_matches_csim(tmp_path):
    out, qm = _train_and_export(tmp_path, WIDE, 100)
    assert energy_width(qm.norm_k, qm.h_fmt) > 64             # (before: "hash energy bound needs 65 bits")
    assert main(["verify", str(out), "--against", "csim"]) == 0
    assert json.loads((out / "verify_csim.json").read_text())["mismatches"] == 0


def test_maps_that_would_overflow_phi_are_narrowed(tmp_path):
    """16 buckets for 8 x 28 x 28 maps: a bucket sums ~400 elements, which overflows phi's 32
    bits at 24-bit maps; the export drops fraction bits of those units' outputs (listed in the
    manifest and report) and golden == C-sim (before: "hash accumulator ... exceeds 32 bits")."""
    data = {**WIDE, "hrn": {"hash_size": 16, "basis_size": 2, "depth": 2}}
    data["units"] = [{**WIDE["units"][0], "layers": [{**WIDE["units"][0]["layers"][0], "out_channels": 8},
                                                    {"type": "relu"}]}]
    out, qm = _train_and_export(tmp_path, data, 60)
    narrowed = qm.source["narrowed_maps"]
    assert narrowed and all(new < old == 24 for old, new in narrowed.values())
    assert {u.out_fmt.width for u in qm.units} == {new for _, new in narrowed.values()}
    assert "narrowed from 24 to" in (out / "report.md").read_text()
    assert main(["verify", str(out), "--against", "csim"]) == 0
