"""Golden model == g++ C simulation, bit for bit, on a small trained model of each training
profile (>= 200 images).

Also checks the golden model against the float reference (accuracy and routes stay close) and
the export's structural promises: reachable calls cover every route the golden model takes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrn_hw.cli import main
from hrn_hw.export import vectors
from hrn_hw.export.ir import QuantModel
from hrn_hw.golden import run as golden_run


@pytest.fixture(scope="module", params=["stable", "paper"])
def exported(tmp_path_factory, request):
    """A model of each training profile (docs/design.md 2b: the export never depends on it),
    exported; stable locks and protects units after each task."""
    root = tmp_path_factory.mktemp(f"parity-{request.param}")
    model = root / "model.pt"
    assert main(["train", "--scenario", "pairwise-mnist", "--limit", "400", "--epochs", "1",
                 "--profile", request.param, "--out", str(model)]) == 0
    out = root / "export"
    assert main(["export", str(model), "-o", str(out), "--golden", "60", "--eval-limit", "300",
                 "--calib", "128", "--no-rtl"]) == 0
    return out


def test_golden_equals_csim_bit_for_bit(exported, capsys):
    capsys.readouterr()
    assert main(["verify", str(exported), "--against", "csim"]) == 0
    printed = capsys.readouterr().out
    assert "300 compared, 0 mismatches" in printed
    result = json.loads((exported / "verify_csim.json").read_text())
    assert result["compared"] == 300 and result["mismatches"] == 0
    assert result["per_output"] == {"embedding": 0, "routes": 0, "logits": 0}


def test_golden_vectors_replay_and_cover_routes(exported):
    qm = QuantModel.load(exported)
    vec = vectors.load(exported)
    res = golden_run(qm, vec["pixels"], vec["tasks"])
    for key in ("embedding", "routes", "logits"):
        assert np.array_equal(getattr(res, key), vec[key])
    # Every unit call a golden route makes is a crossbar entry of the export.
    calls = {(c["unit"], c["source"]) for c in qm.reachable}
    for route in res.routes:
        steps = [int(u) for u in route if u >= 0]
        for k in range(1, len(steps)):
            src = "input" if k == 1 else steps[k - 2]
            assert (steps[k - 1], src) in calls
    # Samples are independent: any batch split gives the same bits.
    half = len(vec["pixels"]) // 3
    part = golden_run(qm, vec["pixels"][half:], vec["tasks"][half:])
    assert np.array_equal(part.embedding, res.embedding[half:])
    assert np.array_equal(part.logits, res.logits[half:])


def test_fixed_point_tracks_float(exported):
    summary = json.loads((exported / "export.json").read_text())
    for task in summary["tasks"]:
        assert task["float_accuracy"] - task["fixed_accuracy"] <= 0.02
        assert task["route_agreement"] >= 0.95
