"""`hrn-hw sweep SPEC.yaml`: training sweeps on Dask (one-line spec errors, a killed worker's run
retried, resume, failures reported), the summary's mean and std, the figures over several
results files, the shipped specs, and the simulator's two-argument form."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from hrn_hw.cl import sweep_run, sweep_spec
from hrn_hw.cl.summary import cell_rows, run_row
from hrn_hw.cli import main
from hrn_hw.errors import HrnError

TINY = "kind: train\nmethods: [hrn]\nconfigs: [pairwise-mnist]\nepochs: 1\nlimit: 20\n"


def write_spec(tmp_path: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def die_once(point: dict) -> dict:
    """A point function for the workers: seed 1's first attempt leaves a half-written results
    file and kills its worker process; every other attempt trains."""
    marker = Path(point["folder"]).parent / "killed-once"
    if point["seed"] == 1 and not marker.exists():
        Path(point["folder"]).mkdir(parents=True)
        (Path(point["folder"]) / "results.json").write_text(json.dumps({"tasks": ["a", "b"], "accuracy_matrix": [[1.0]]}))
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return sweep_run.run_point(point)


def must_not_run(point: dict) -> dict:
    raise AssertionError(f"{point['folder']} was trained again")


@pytest.mark.parametrize("text, message", [
    ("methods: [hrn]\nconfigs: [pairwise-mnist]\nseeds: 1\n", "kind: train is needed"),
    ("arch: fpga-pipelined\naxes: {in_flight: [1]}\n", "hrn-hw sweep EXPORT SWEEP.yaml"),
    (TINY + "seeds: 1\ncolour: red\n", "unknown key(s) colour"),
    (TINY.replace("[hrn]", "[hrn, sgd]") + "seeds: 1\n", "unknown method(s) sgd"),
    (TINY + "seeds: 0\n", "seeds must be a count >= 1"),
    (TINY + "seeds: [1, 1]\n", "seeds must be a count >= 1"),
    (TINY.replace("epochs: 1", "epochs: 0") + "seeds: 1\n", "epochs must be a positive integer"),
    (TINY.replace("[pairwise-mnist]", "[no-such-config]") + "seeds: 1\n", "no bundled config 'no-such-config'"),
    (TINY.replace("[pairwise-mnist]", "[{config: pairwise-mnist, overrides: {hrn: {colour: 1}}}]") + "seeds: 1\n",
     "hrn: unknown key(s) colour"),
    (TINY.replace("[pairwise-mnist]", "[{config: pairwise-mnist, overrides: {hrn: {depth: 0}}}]") + "seeds: 1\n",
     "depth must be >= 1"),
    (TINY.replace("[pairwise-mnist]", "[pairwise-mnist, {config: pairwise-mnist, label: pairwise-mnist}]")
     + "seeds: 1\n", "share the label(s) pairwise-mnist"),
    (TINY.replace("[pairwise-mnist]", "[{config: pairwise-mnist, label: a/b}]") + "seeds: 1\n", "label must be"),
    ("[a, b]\n", "a YAML mapping"),
])
def test_bad_specs_are_one_line(tmp_path, capsys, text, message):
    spec = write_spec(tmp_path, text)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_default_labels_and_points(tmp_path):
    spec = sweep_spec.read_spec(write_spec(tmp_path, TINY.replace(
        "[pairwise-mnist]", "[pairwise-mnist, {config: pairwise-mnist, overrides: {hrn: {grad_scaling: false}}}]")
        + "seeds: [3, 7]\n"))
    assert [label for label, _, _ in spec.configs] == ["pairwise-mnist", "pairwise-mnist+grad_scaling=false"]
    assert spec.configs[1][1]["hrn"]["grad_scaling"] is False and spec.configs[1][1]["name"] == spec.configs[1][0]
    assert spec.out == Path("runs/sweeps/tiny")
    points = spec.points(tmp_path)
    assert [(p["label"], p["seed"]) for p in points] == [("pairwise-mnist", 3), ("pairwise-mnist", 7),
                                                         ("pairwise-mnist+grad_scaling=false", 3),
                                                         ("pairwise-mnist+grad_scaling=false", 7)]
    assert points[3]["folder"] == str(tmp_path / "hrn" / "pairwise-mnist+grad_scaling=false" / "seed-7")


def test_shipped_specs():
    runs = {name: len(sweep_spec.read_spec(sweep_spec.spec_path(name)).points())
            for name in sweep_spec.shipped_specs()}
    assert runs == {"methods-pairwise-mnist": 30, "methods-fashion-mnist": 18, "methods-mnist-fashion-pairs": 18,
                    "stable-ablation": 24, "stable-ablation-fashion": 12, "table1-ablation": 36,
                    "time-per-method": 6}
    ablation = sweep_spec.read_spec(sweep_spec.spec_path("table1-ablation"))
    assert len({json.dumps(config, sort_keys=True) for _, config, _ in ablation.configs}) == 12
    assert {config["profile"] for _, config, _ in ablation.configs} == {"paper"}
    methods = sweep_spec.read_spec(sweep_spec.spec_path("methods-pairwise-mnist"))
    assert [(label, config["profile"], m) for label, config, m in methods.configs] == [
        ("pairwise-mnist", "stable", ("hrn", "vc", "ewc", "lwf", "ell")), ("paper", "paper", ("hrn",))]


def test_spec_profile_override_and_methods(tmp_path):
    """An entry's profile: override takes that profile's switch defaults (the file's own switches
    still win); an entry's methods: runs only those of the spec's methods."""
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(textwrap.dedent("""\
        kind: train
        methods: [hrn, vc]
        seeds: 1
        configs:
          - pairwise-mnist
          - {config: pairwise-mnist, label: paper, overrides: {profile: paper}, methods: [hrn]}
          - {config: pairwise-mnist, label: paper-lock, overrides: {profile: paper, hrn: {basis_lock: true}}, methods: [hrn]}
        """))
    spec = sweep_spec.read_spec(spec_file)
    switches = {label: config["hrn"]["basis_lock"] for label, config, _ in spec.configs}
    assert switches == {"pairwise-mnist": True, "paper": False, "paper-lock": True}
    assert [(p["method"], p["label"]) for p in spec.points(tmp_path)] == [
        ("hrn", "pairwise-mnist"), ("hrn", "paper"), ("hrn", "paper-lock"), ("vc", "pairwise-mnist")]
    spec_file.write_text(spec_file.read_text().replace("methods: [hrn]}", "methods: [ewc]}", 1))
    with pytest.raises(HrnError, match=r"configs\[1\]: methods must be a non-empty list of the spec's methods"):
        sweep_spec.read_spec(spec_file)


def test_identity_reads_stored_runs():
    """A run record from before profiles is the paper profile with every switch's default; a
    baseline's run does not depend on the HRN's section or the profile."""
    from hrn_hw.config import builtin_config_path, config_to_dict, load_config

    stable = config_to_dict(load_config(builtin_config_path("pairwise-mnist")))
    paper = config_to_dict(load_config(builtin_config_path("pairwise-mnist"), "paper"))
    old = {k: v for k, v in paper.items() if k != "profile"}
    old["hrn"] = {k: v for k, v in old["hrn"].items() if k != "basis_lock"}
    run = {"method": "hrn", "seed": 0, "epochs": None, "limit": None}
    assert sweep_spec.identity({**run, "config": old}) == sweep_spec.identity({**run, "config": paper})
    assert sweep_spec.identity({**run, "config": old}) != sweep_spec.identity({**run, "config": stable})
    run["method"] = "vc"
    assert sweep_spec.identity({**run, "config": old}) == sweep_spec.identity({**run, "config": stable})


def test_a_run_trained_before_a_switch_existed_is_not_the_profile_of_today():
    """The stable profile gained a switch: a stable run recorded without it trained with the
    switch off, so it is no longer that profile's run; a paper run (switch off either way) is."""
    from hrn_hw.config import builtin_config_path, config_to_dict, load_config

    stable = config_to_dict(load_config(builtin_config_path("pairwise-mnist")))
    paper = config_to_dict(load_config(builtin_config_path("pairwise-mnist"), "paper"))
    for config, keeps in ((stable, False), (paper, True)):
        point = {"method": "hrn", "config": config}
        switches = load_config(builtin_config_path("pairwise-mnist"), config["profile"]).switches
        assert sweep_spec.same_training(point, {"switches": switches})
        older = {k: v for k, v in switches.items() if k != "avoid_task_energy"}
        assert sweep_spec.same_training(point, {"switches": older}) == keeps
    assert sweep_spec.same_training({"method": "vc", "config": stable}, {})


def test_killed_run_is_retried_then_resume_skips_finished_runs(tmp_path):
    spec = write_spec(tmp_path, TINY + f"seeds: 2\nout: {tmp_path / 'out'}\n")
    done = sweep_run.run_train_sweep(spec, workers=2, fn=die_once, progress=False)
    out = tmp_path / "out"
    assert done.out == out and done.doc["failed"] == []
    assert (out / "hrn" / "pairwise-mnist" / "killed-once").is_file()     # seed 1's first worker died
    files = [out / "hrn" / "pairwise-mnist" / f"seed-{s}" / "results.json" for s in (0, 1)]
    for seed, path in enumerate(files):
        results = json.loads(path.read_text())
        assert results["seed"] == seed and len(results["accuracy_matrix"]) == 5
        assert results["sweep"]["cpu_seconds"] > 0 and (path.parent / "model.pt").is_file()
    assert [c["seeds"] for c in done.doc["cells"]] == [[0, 1]]
    assert done.doc["timing"]["points_run"] == 2 and done.doc["timing"]["workers"] == 2
    assert done.doc["timing"]["overhead"] > 0
    for name in ("summary.md", "summary.csv", "summary.json", "fig2_pairwise-mnist.png", "fig3_pairwise-mnist.png",
                 "fig4_pairwise-mnist.png", "fig5_pairwise-mnist.png"):
        assert (out / name).stat().st_size > 0, name
    # Resumed: nothing trains, the results files are untouched, the summary is the same.
    stamps = [path.stat().st_mtime_ns for path in files]
    again = sweep_run.run_train_sweep(spec, workers=2, fn=must_not_run, progress=False)
    assert [path.stat().st_mtime_ns for path in files] == stamps
    assert again.doc["cells"] == done.doc["cells"] and again.doc["timing"]["points_run"] == 0


def test_failed_run_is_reported_and_exits_1(tmp_path, monkeypatch, capsys):
    def broken(point):
        raise ValueError("no data for this run")

    monkeypatch.setattr(sweep_run, "run_point", broken)
    spec = write_spec(tmp_path, TINY + f"seeds: 1\nout: {tmp_path / 'out'}\n")
    assert main(["sweep", str(spec), "--workers", "0"]) == 1
    printed = capsys.readouterr().out
    assert "FAILED: training runs: point 1/1 (method='hrn', label='pairwise-mnist'" in printed
    assert "ValueError: no data for this run" in printed
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["failed"]


def test_refuses_a_foreign_out_folder(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    spec = write_spec(tmp_path, TINY + f"seeds: 1\nout: {tmp_path / 'out'}\n")
    assert main(["sweep", str(spec)]) == 2
    assert "is not a training sweep's folder" in capsys.readouterr().err


def results(method: str, config: str, seed: int, matrix: list, train=(1.0, 3.0), with_metrics=False) -> dict:
    """A hand-built results dict of a two-task run."""
    doc = {"scenario": "toy", "method": method, "config": config, "seed": seed, "tasks": ["t0", "t1"],
           "accuracy_matrix": matrix, "train_seconds": list(train), "eval_seconds": [0.5, 1.0 + seed],
           "unit_usage": [{"test_unit_visits": [6, 2]}, {"test_unit_visits": [1, 1, 2]}]}
    if method == "hrn":
        doc["route_changes"] = [[0.0], [0.25 * (seed + 1), 0.0]]
    if with_metrics:
        from hrn_hw.cl.metrics import summarise

        doc["metrics"] = summarise(matrix)
    return doc


def test_summary_mean_and_std_over_seeds():
    runs = [results("hrn", "a", 0, [[0.9], [0.8, 0.7]]), results("hrn", "a", 1, [[1.0], [0.6, 0.9]], with_metrics=True),
            results("ewc", "a", 0, [[0.5], [0.5, 0.5]], train=(2.0, 2.0))]
    row = run_row(runs[0])
    assert row["forgetting_mean"] == pytest.approx(0.1) and row["forgetting_worst"] == pytest.approx(0.1)
    assert row["bwt"] == pytest.approx(-0.1) and row["top_accuracy_mean"] == pytest.approx(0.8)
    cells = cell_rows(runs)
    assert [(c["method"], c["config"], c["seeds"]) for c in cells] == [("hrn", "a", [0, 1]), ("ewc", "a", [0])]
    hrn = cells[0]["values"]
    assert hrn["global_accuracy"] == {"mean": pytest.approx(0.75), "std": pytest.approx(0.0)}
    assert hrn["t0_accuracy"] == {"mean": pytest.approx(0.7), "std": pytest.approx(0.1)}
    assert hrn["forgetting_mean"] == {"mean": pytest.approx(0.25), "std": pytest.approx(0.15)}
    assert hrn["train_seconds_per_task"] == {"mean": pytest.approx(2.0), "std": pytest.approx(0.0)}
    assert hrn["eval_seconds"] == {"mean": pytest.approx(1.5), "std": pytest.approx(0.5)}
    assert cells[1]["values"]["bwt"] == {"mean": 0.0, "std": 0.0}


def test_plot_several_results_writes_the_figures(tmp_path, capsys):
    paths = []
    for i, doc in enumerate([results("hrn", "a", 0, [[0.9], [0.8, 0.7]]), results("hrn", "a", 1, [[1.0], [0.6, 0.9]]),
                             results("vc", "a", 0, [[0.9], [0.2, 0.95]])]):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(doc))
    assert main(["plot", *map(str, paths), "-o", str(tmp_path / "figs")]) == 0
    for name in ("fig2_toy.png", "fig3_toy.png", "fig4_toy.png", "fig5_toy.png"):
        assert (tmp_path / "figs" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.count("figure written to") == 4
    assert main(["plot", str(paths[0]), str(paths[1])]) == 0          # default: the files' folder
    assert (tmp_path / "fig2_toy.png").stat().st_size > 0
    paths[2].write_text(json.dumps({"tasks": ["t0", "t1"], "accuracy_matrix": [[0.9]]}))
    assert main(["plot", *map(str, paths), "-o", str(tmp_path / "bad")]) == 2
    assert "unfinished run (1 of 2 tasks)" in capsys.readouterr().err


def test_simulator_sweep_keeps_its_two_argument_form(tmp_path, monkeypatch, capsys):
    from hrn_hw.dataflow import explore

    calls = []
    monkeypatch.setattr(explore, "explore", lambda *args: calls.append(args) or ({"rows": []}, tmp_path / "o"))
    monkeypatch.setattr(explore, "format_rows", lambda doc: "the table")
    assert main(["sweep", "EXPORT", "SWEEP.yaml", "-o", "OUT", "--workers", "2"]) == 0
    assert calls == [(Path("EXPORT"), Path("SWEEP.yaml"), Path("OUT"), False, None, 2)]
    assert "the table" in capsys.readouterr().out


def test_longest_runs_go_first():
    """The sweep submits runs by expected work, longest first (fewer idle workers at the end)."""
    spec = sweep_spec.read_spec(sweep_spec.spec_path("stable-ablation"))
    points = spec.points()
    order = sorted(points, key=sweep_run.expected_work, reverse=True)
    assert {json.loads(json.dumps(p["config"]))["scenario"] for p in order[:12]} == {"mnist-fashion-pairs"}
    assert order[-1]["config"]["scenario"] == "pairwise-mnist"
    assert sweep_run.expected_work({**points[0], "limit": 10, "epochs": 1}) == 50   # 5 tasks x 1 epoch x 10
