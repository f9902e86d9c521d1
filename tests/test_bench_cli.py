"""`hrn-hw bench` from the command line, on a small trained MNIST model (conftest's, two tasks).

Happy path: the printed table, bench.json's layout and arithmetic (with a stand-in cycle model
whose counts are known), bench.png, the default BENCH_DIR beside model.pt with a temporary
export and the real cycle model `hrn_hw.rtl.latency.sample_cycles`, the knobs of --export's RTL,
--force; the stream section, one sample at a time (in_flight 1) and pipelined (in_flight >= 2,
`hrn_hw.dataflow.stream.stream_schedule`), with its ratio to the same run's PyTorch batch 256.
Bad input: one `hrn-hw: error:` line, exit 2, nothing written.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import hrn_hw.rtl.latency
from hrn_hw.dataflow.stream import stream_schedule
from conftest import trained_model
from hrn_hw import bench, golden
from hrn_hw.checkpoint import save_checkpoint
from hrn_hw.export.ir import QuantModel
from hrn_hw.export.pipeline import export
from hrn_hw.rtl.knobs import RtlKnobs
from hrn_hw.scenarios import TaskSpec, load_tasks
from test_export_cli import cli, error_line, leftovers

N = 24
SPECS = [TaskSpec("mnist-0/1", "mnist", (0, 1)), TaskSpec("mnist-2/3", "mnist", (2, 3))]
TOP_KEYS = {"format", "version", "hrn_hw_version", "command", "date", "model", "scenario", "config", "export",
            "samples", "machine", "pytorch", "rtl", "rtl_measured", "stream", "speedup"}


def fake_cycles(qm, routes, knobs=None, tasks=None):
    """Stand-in cycle model: 1000 + 500 per selected unit + 7 * the units' indices."""
    return 1000 + 500 * (routes >= 0).sum(1) + 7 * np.where(routes >= 0, routes, 0).sum(1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """conftest's briefly trained HRN with a second head, saved as a two-task pairwise-MNIST model.pt."""
    m = trained_model()
    m.add_head(2)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, m, SPECS)
    return path


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "out"
    export(model, out, calib=16, golden_per_task=1, eval_limit=4, quiet=True, rtl=False)
    return out


@pytest.fixture(scope="module")
def ran(model, exported, tmp_path_factory):
    """(BENCH_DIR, exit code, stdout, stderr) of one bench with --export and the stand-in cycle model."""
    out = tmp_path_factory.mktemp("bench") / "b"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hrn_hw.rtl.latency, "sample_cycles", fake_cycles)
        code, stdout, stderr = cli(["bench", model, "--export", exported, "-o", out, "--n", N])
    return out, code, stdout, stderr


def test_exit_0_table_and_progress(ran):
    out, code, stdout, stderr = ran
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "RTL @ 200 MHz nominal, 1 instance (median)" in stdout
    assert "PyTorch cpu, batch 1 (median)" in stdout and "PyTorch cpu, batch 256 (amortised)" in stdout
    assert f"bench written to {out}" in stdout
    assert [line[:5] for line in stderr.splitlines()] == [f"[{i}/5]" for i in range(1, 6)]
    assert leftovers(out) == []


def test_json_layout(ran, model, exported):
    r = json.loads((ran[0] / "bench.json").read_text())
    assert set(r) == TOP_KEYS
    assert r["format"] == "hrn-hw/bench" and r["version"] == 1
    assert r["model"] == str(model) and r["scenario"] == "pairwise-mnist"
    assert r["command"].startswith(f"hrn-hw bench {model} --device cpu --clock-mhz 200 -o ")
    assert f"--n {N} --stream-samples 1000" in r["command"]
    assert r["export"]["path"] == str(exported) and r["export"]["temporary"] is False
    assert r["samples"]["n"] == N and r["samples"]["per_task"] == [N // 2, N // 2]
    assert r["samples"]["tasks"] == ["mnist-0/1", "mnist-2/3"]
    p = r["pytorch"]
    assert p["device"] == "cpu" and p["torch_version"] == torch.__version__ and p["threads"] >= 1
    assert set(p["batch1"]) >= {"median_us", "p90_us", "samples_per_s", "forwards", "warmup_forwards"}
    assert p["batch1"]["forwards"] == N and p["batch1"]["p90_us"] >= p["batch1"]["median_us"] > 0
    assert p["batch256"]["batch_size"] == 256 and p["batch256"]["batches"] == bench.BATCHES
    assert set(r["rtl"]) >= {"nominal_clock_mhz", "clock_note", "cycles_per_sample", "latency_us_nominal",
                             "samples_per_s_nominal", "instances"}
    assert r["rtl"]["nominal_clock_mhz"] == 200 and "nominal" in r["rtl"]["clock_note"]
    assert set(r["speedup"]) >= {"rtl_vs_pytorch_batch1_latency", "rtl_vs_pytorch_batch256_throughput"}


def test_json_arithmetic(ran, model, exported):
    """The RTL numbers are the cycle model's counts on the golden routes of the same N images."""
    r = json.loads((ran[0] / "bench.json").read_text())
    pixels, task_ids = bench.pick_test_images(load_tasks(SPECS), N)
    cycles = fake_cycles(None, golden.run(QuantModel.load(exported), pixels, task_ids).routes)
    rtl, p = r["rtl"], r["pytorch"]
    assert rtl["cycles_per_sample"]["min"] == cycles.min() and rtl["cycles_per_sample"]["max"] == cycles.max()
    med = float(np.median(cycles))
    assert rtl["cycles_per_sample"]["median"] == med
    assert rtl["latency_us_nominal"] == pytest.approx(med / 200)
    assert rtl["samples_per_s_nominal"] == pytest.approx(200e6 / med)
    assert r["speedup"]["rtl_vs_pytorch_batch1_latency"] == pytest.approx(p["batch1"]["median_us"] * 200 / med)
    assert r["speedup"]["rtl_vs_pytorch_batch256_throughput"] == pytest.approx(
        200e6 / med / p["batch256"]["samples_per_s"])
    assert p["batch256"]["samples_per_s"] == pytest.approx(256 * bench.BATCHES / p["batch256"]["seconds"])


def test_measured_clock_of_an_implemented_export(model, exported, tmp_path, monkeypatch):
    """With OUT/implement/<part>/implement.json (hrn-hw implement's), bench also reports the RTL at
    that post-route Fmax, labelled measured on the part, against PyTorch on every core and on one
    thread; the nominal figures stay as they were."""
    out = tmp_path / "export"
    shutil.copytree(exported, out)
    doc = {"part": "ecp5-85f", "device": "LFE5U-85F", "fmax_mhz": 50.0, "timing_met": False, "target_mhz": 100.0}
    (out / "implement" / "ecp5-85f").mkdir(parents=True)
    (out / "implement" / "ecp5-85f" / "implement.json").write_text(json.dumps(doc))
    monkeypatch.setattr(hrn_hw.rtl.latency, "sample_cycles", fake_cycles)
    code, stdout, stderr = cli(["bench", model, "--export", out, "-o", tmp_path / "b", "--n", 8])
    assert code == 0, stderr
    r = json.loads((tmp_path / "b" / "bench.json").read_text())
    med = r["rtl"]["cycles_per_sample"]["median"]
    (m,) = r["rtl_measured"]
    assert m["fmax_mhz"] == 50.0 and m["device"] == "LFE5U-85F" and "measured after place and route" in m["clock_note"]
    assert m["latency_us"] == pytest.approx(med / 50) and m["samples_per_s"] == pytest.approx(50e6 / med)
    runs = {"1_thread": r["pytorch"]["one_thread"], f"{r['pytorch']['threads']}_threads": r["pytorch"]}
    for name, run in runs.items():
        assert m["speedup"][name]["batch1_latency"] == pytest.approx(run["batch1"]["median_us"] / (med / 50))
        assert m["speedup"][name]["batch256_throughput"] == pytest.approx(50e6 / med / run["batch256"]["samples_per_s"])
    assert r["rtl"]["nominal_clock_mhz"] == 200 and "measured on LFE5U-85F" in stdout
    (out / "implement" / "ecp5-85f" / "implement.json").write_text("{not json")
    code, _, stderr = cli(["bench", model, "--export", out, "-o", tmp_path / "c", "--n", 8])
    assert code == 2 and "unreadable" in stderr and not (tmp_path / "c").exists()


def test_png_written(ran):
    png = ran[0] / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_default_dir_temporary_export_and_clock(model, tmp_path):
    """No -o: bench/ beside model.pt; no --export: a temporary export; the real cycle model, default knobs."""
    local = tmp_path / "model.pt"
    local.write_bytes(model.read_bytes())
    code, stdout, stderr = cli(["bench", local, "--n", 6, "--clock-mhz", 100])
    assert code == 0, stderr
    r = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert r["export"] == {"path": None, "temporary": True, "source": r["export"]["source"]}
    assert r["rtl"]["nominal_clock_mhz"] == 100 and "100 MHz nominal" in stdout
    assert r["rtl"]["latency_us_nominal"] == pytest.approx(r["rtl"]["cycles_per_sample"]["median"] / 100)
    assert r["rtl"]["cycles_per_sample"]["min"] > 0
    assert r["rtl"]["knobs"] == RtlKnobs().to_dict() and "default" in r["rtl"]["knobs_note"]
    assert (tmp_path / "bench" / "bench.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "model.pt"]


def test_existing_dir_needs_force(ran, model, exported, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "bench.json").write_text((ran[0] / "bench.json").read_text())
    (out / "old.txt").write_text("from an earlier bench")
    args = ["bench", model, "--export", exported, "-o", out, "--n", 4]
    code, _, err = cli(args)
    assert code == 2 and "already exists; pass --force" in error_line(err)
    assert (out / "old.txt").is_file()
    code, _, err = cli(args + ["--force"])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.png"]
    assert json.loads((out / "bench.json").read_text())["samples"]["n"] == 4
    assert leftovers(out) == []


def test_force_never_replaces_a_foreign_dir(model, exported, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = cli(["bench", model, "--export", exported, "-o", out, "--force"])
    assert code == 2 and "not an hrn-hw bench" in error_line(err)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("case", ["missing", "corrupt", "not-an-export", "cuda"])
def test_bad_input_exit_2_nothing_written(case, model, tmp_path):
    out, path, extra = tmp_path / "b", model, []
    if case == "missing":
        path = tmp_path / "nope.pt"
    elif case == "corrupt":
        path = tmp_path / "corrupt.pt"
        path.write_bytes(model.read_bytes()[:300])
    elif case == "not-an-export":
        (tmp_path / "plain").mkdir()
        extra = ["--export", tmp_path / "plain"]
    elif torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    else:
        extra = ["--device", "cuda"]
    code, _, err = cli(["bench", path, "-o", out, "--n", 4] + extra)
    line = error_line(err)
    assert code == 2
    assert {"missing": "no such checkpoint", "corrupt": "corrupt", "not-an-export": "not an hrn-hw export",
            "cuda": "no CUDA device"}[case] in line
    assert not out.exists() and leftovers(out) == []


def test_export_of_another_model_refused(exported, tmp_path):
    """A one-task model against the two-task export."""
    m = trained_model()
    path = tmp_path / "one.pt"
    save_checkpoint(path, m, SPECS[:1])
    code, _, err = cli(["bench", path, "--export", exported, "-o", tmp_path / "b", "--n", 4])
    assert code == 2 and "an export of another model" in error_line(err)
    assert not (tmp_path / "b").exists()


def test_knobs_of_the_exports_rtl(model, exported, tmp_path, monkeypatch):
    """--export OUT with OUT/rtl/rtl.json: the cycle model gets the knobs the RTL was generated with."""
    out = tmp_path / "export"
    shutil.copytree(exported, out)
    (out / "rtl").mkdir()
    knobs = RtlKnobs(conv_lanes=2)
    (out / "rtl" / "rtl.json").write_text(json.dumps({"knobs": knobs.to_dict()}))
    seen = []

    def stand_in(qm, routes, knobs=None, tasks=None):
        seen.append((knobs, None if tasks is None else list(tasks)))
        return fake_cycles(qm, routes)

    monkeypatch.setattr(hrn_hw.rtl.latency, "sample_cycles", stand_in)
    code, _, err = cli(["bench", model, "--export", out, "-o", tmp_path / "b", "--n", 4])
    assert code == 0, err
    assert seen == [(knobs, [0, 1, 0, 1])]
    r = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert r["rtl"]["knobs"] == knobs.to_dict() and "rtl.json" in r["rtl"]["knobs_note"]


@pytest.mark.parametrize("argv", [["--clock-mhz", "0"], ["--clock-mhz", "-5"], ["--clock-mhz", "nan"],
                                  ["--clock-mhz", "fast"], ["--n", "0"], ["--device", "tpu"],
                                  ["--stream-samples", "1"], ["--stream-samples", "many"]])
def test_usage_errors(argv, model, tmp_path):
    code, _, err = cli(["bench", model, "-o", tmp_path / "b"] + argv)
    assert code == 2 and "Traceback" not in err and argv[0] in err
    assert not (tmp_path / "b").exists()


def test_stream_one_sample_at_a_time(model, exported, tmp_path, monkeypatch):
    """in_flight 1 in the export's rtl.json: the stream is the N samples one at a time, interval
    = the cycle model's mean cycles per sample, latency = its cycles; the ratio is against the
    same run's PyTorch batch 256 on every core."""
    out = tmp_path / "export"
    shutil.copytree(exported, out)
    (out / "rtl").mkdir()
    (out / "rtl" / "rtl.json").write_text(json.dumps({"knobs": RtlKnobs(in_flight=1).to_dict()}))
    monkeypatch.setattr(hrn_hw.rtl.latency, "sample_cycles", fake_cycles)
    code, stdout, stderr = cli(["bench", model, "--export", out, "-o", tmp_path / "b", "--n", N])
    assert code == 0, stderr
    r = json.loads((tmp_path / "b" / "bench.json").read_text())
    pixels, task_ids = bench.pick_test_images(load_tasks(SPECS), N)
    cycles = fake_cycles(None, golden.run(QuantModel.load(exported), pixels, task_ids).routes)
    st = r["stream"]
    assert st["in_flight"] == 1 and st["replicas"] == {} and "one sample at a time" in st["note"]
    assert st["samples"] == N and "sample_cycles" in st["model"]
    assert st["interval_cycles"]["mean"] == pytest.approx(cycles.mean())
    assert st["interval_cycles"]["median"] == pytest.approx(np.median(cycles))
    lat = st["latency_cycles"]
    assert lat["min"] == cycles.min() and lat["max"] == cycles.max()
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert lat[key] == pytest.approx(np.percentile(cycles, q))
    (nominal,) = st["clocks"]
    rate = 200e6 / cycles.mean()
    assert nominal["label"] == "nominal" and nominal["clock_mhz"] == 200
    assert nominal["samples_per_s"] == pytest.approx(rate)
    assert nominal["latency_us"]["p99"] == pytest.approx(np.percentile(cycles, 99) / 200)
    ratio = rate / r["pytorch"]["batch256"]["samples_per_s"]
    assert nominal["rtl_stream_vs_pytorch_batch256_throughput"] == pytest.approx(ratio)
    assert r["speedup"]["rtl_stream_vs_pytorch_batch256_throughput"] == pytest.approx(ratio)
    assert "RTL stream, one sample at a time (in_flight 1)" in stdout
    assert "RTL stream @ 200 MHz nominal" in stdout


def test_stream_pipelined_matches_stream_schedule(model, exported, tmp_path, monkeypatch):
    """in_flight 4 in the export's rtl.json: the stream section is stream_schedule's on the N routes
    repeated to --stream-samples, at the nominal clock and at a measured post-route clock."""
    out = tmp_path / "export"
    shutil.copytree(exported, out)
    knobs = RtlKnobs(in_flight=4, replicas={"hash": 2})
    (out / "rtl").mkdir()
    (out / "rtl" / "rtl.json").write_text(json.dumps({"knobs": knobs.to_dict()}))
    doc = {"part": "ecp5-85f", "device": "LFE5U-85F", "fmax_mhz": 50.0, "timing_met": True, "target_mhz": 50.0}
    (out / "implement" / "ecp5-85f").mkdir(parents=True)
    (out / "implement" / "ecp5-85f" / "implement.json").write_text(json.dumps(doc))
    monkeypatch.setattr(hrn_hw.rtl.latency, "sample_cycles", fake_cycles)
    n, m = 6, 40
    code, stdout, stderr = cli(["bench", model, "--export", out, "-o", tmp_path / "b", "--n", n,
                                "--stream-samples", m])
    assert code == 0, stderr
    r = json.loads((tmp_path / "b" / "bench.json").read_text())
    pixels, task_ids = bench.pick_test_images(load_tasks(SPECS), n)
    qm = QuantModel.load(out)
    routes = golden.run(qm, pixels, task_ids).routes
    idx = np.arange(m) % n
    sched = stream_schedule(qm, routes[idx], task_ids[idx], knobs)
    gaps = np.diff(np.sort(sched["done"]))
    st = r["stream"]
    assert st["in_flight"] == 4 and st["replicas"] == {"hash": 2} and "stream_schedule" in st["model"]
    assert st["samples"] == m and st["distinct_samples"] == n
    assert st["interval_cycles"]["mean"] == pytest.approx(gaps.mean())
    assert st["interval_cycles"]["median"] == pytest.approx(np.median(gaps))
    assert st["schedule_interval_cycles"] == pytest.approx(sched["interval"])
    lat = st["latency_cycles"]
    assert lat["min"] == sched["latency"].min() and lat["max"] == sched["latency"].max()
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert lat[key] == pytest.approx(np.percentile(sched["latency"], q))
    bb = r["pytorch"]["batch256"]["samples_per_s"]
    nominal, routed = st["clocks"]
    assert nominal["label"] == "nominal" and nominal["clock_mhz"] == 200
    assert routed["label"] == "post-route" and routed["part"] == "ecp5-85f" and routed["clock_mhz"] == 50
    for c in (nominal, routed):
        rate = c["clock_mhz"] * 1e6 / gaps.mean()
        assert c["samples_per_s"] == pytest.approx(rate)
        assert c["latency_us"]["p50"] == pytest.approx(np.percentile(sched["latency"], 50) / c["clock_mhz"])
        assert c["rtl_stream_vs_pytorch_batch256_throughput"] == pytest.approx(rate / bb)
    assert r["speedup"]["rtl_stream_vs_pytorch_batch256_throughput"] == pytest.approx(200e6 / gaps.mean() / bb)
    (measured,) = r["rtl_measured"]
    assert measured["rtl_stream_vs_pytorch_batch256_throughput"] == pytest.approx(50e6 / gaps.mean() / bb)
    assert f"RTL stream, 4 in flight, replicas hash=2, {m} samples" in stdout
    assert "RTL stream @ 50 MHz post-route on ecp5-85f" in stdout and "RTL stream @ 200 MHz nominal" in stdout
    assert (tmp_path / "b" / "bench.png").stat().st_size > 10_000


def test_stream_knobs_that_do_not_fit_the_export(model, exported, tmp_path, monkeypatch):
    """Replicas of a unit the export does not have: one error line, nothing written."""
    out = tmp_path / "export"
    shutil.copytree(exported, out)
    (out / "rtl").mkdir()
    (out / "rtl" / "rtl.json").write_text(json.dumps({"knobs": RtlKnobs(in_flight=2, replicas="unit99=2").to_dict()}))
    monkeypatch.setattr(hrn_hw.rtl.latency, "sample_cycles", fake_cycles)
    code, _, err = cli(["bench", model, "--export", out, "-o", tmp_path / "b", "--n", 4])
    assert code == 2 and "do not fit this export" in error_line(err)
    assert not (tmp_path / "b").exists()
