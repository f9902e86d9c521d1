"""`hrn-hw sweep`: design points of the simulator on a local Dask cluster, the table, the
Pareto front, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrn_hw.cli import main
from hrn_hw.dataflow import explore


@pytest.fixture(scope="module")
def export_dir() -> Path:
    from simlib import small_export

    return small_export()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_sweep_runs_every_point_on_dask_and_matches_simulate(export_dir, tmp_path, capsys):
    sweep = write(tmp_path, "arch: fpga-pipelined\nsamples: 300\nsettings: {fifo_depth: 4}\n"
                            "axes:\n  in_flight: [1, 4]\n  replicas: [{}, {unit1: 2}]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(export_dir), str(sweep), "-o", str(out), "--workers", "2"]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert [r["values"] for r in doc["rows"]] == [{"in_flight": 1, "replicas": {}}, {"in_flight": 1, "replicas": {"unit1": 2}},
                                                  {"in_flight": 4, "replicas": {}}, {"in_flight": 4, "replicas": {"unit1": 2}}]
    assert (out / "sweep.csv").read_text().count("\n") == 5 and (out / "sweep.png").is_file()
    assert "Pareto front" in capsys.readouterr().out
    # a point's row is what `hrn-hw simulate` measures for the same settings
    sim = tmp_path / "sim"
    arch = tmp_path / "arch.yaml"
    arch.write_text("kind: fpga-pipelined\nin_flight: 4\nfifo_depth: 4\nreplicas: {unit1: 2}\n")
    assert main(["simulate", str(export_dir), "--arch", str(arch), "--samples", "300", "-o", str(sim), "--no-plots"]) == 0
    one = json.loads((sim / "simulate.json").read_text())["results"]
    assert doc["rows"][3]["samples_per_cycle"] == one["throughput"]["samples_per_cycle"]
    assert doc["rows"][3]["latency_median"] == one["latency_cycles"]["median"]


def test_pareto_front():
    rows = [{"samples_per_cycle": a, "latency_median": b} for a, b in [(1, 10), (2, 10), (2, 20), (3, 30), (0.5, 5)]]
    assert explore.pareto(rows) == [1, 3, 4]


@pytest.mark.parametrize("text, message", [
    ("arch: fpga-pipelined\naxes: {in_flight: []}\n", "non-empty list"),
    ("arch: fpga-pipelined\nspeed: 3\naxes: {in_flight: [1]}\n", "unknown key(s) speed"),
    ("arch: fpga-pipelined\naxes: {in_flight: [1, 0]}\n", "in_flight must be an integer >= 1"),
    ("arch: fpga-pipelined\naxes: {colour: [1]}\n", "unknown key(s) colour"),
    ("[not, a, mapping]\n", "a YAML mapping"),
])
def test_bad_sweep_files(export_dir, tmp_path, capsys, text, message):
    out = tmp_path / "out"
    assert main(["sweep", str(export_dir), str(write(tmp_path, text)), "-o", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
