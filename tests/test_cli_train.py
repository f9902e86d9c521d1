"""`hrn-hw train` / `hrn-hw eval` on real MNIST in tiny runs: outputs, determinism, refusal to
clobber, resume after an interruption equal to an uninterrupted run, eval JSON, user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import hrn_hw.train as train_mod
from hrn_hw.checkpoint import load_checkpoint
from hrn_hw.cli import main
from hrn_hw.scenarios import scenario_tasks
from conftest import run_cli

PER_TASK = ("accuracy_matrix", "global_accuracy", "t0_accuracy", "unit_usage", "train_seconds",
            "eval_seconds", "epoch_loss")
DETERMINISTIC = ("tasks", "seed", "limit", "method", "accuracy_matrix", "global_accuracy", "t0_accuracy",
                 "unit_usage", "epoch_loss", "metrics", "route_changes")


cli = run_cli


def train_args(d: Path, *extra: str, limit: int = 150, epochs: int = 1, seed: int = 0) -> list[str]:
    return ["train", "--scenario", "pairwise-mnist", "--limit", str(limit), "--epochs", str(epochs),
            "--seed", str(seed), "--out", str(d / "model.pt"), "--results", str(d / "results.json"), *extra]


def tensors(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert list(ta) == list(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k


def assert_same_results(a: dict, b: dict) -> None:
    for key in DETERMINISTIC:
        assert a[key] == b[key], key


@pytest.fixture(scope="module")
def run1(tmp_path_factory):
    d = tmp_path_factory.mktemp("run1")
    code, out, err = cli(train_args(d))
    assert code == 0, err
    return d, out, json.loads((d / "results.json").read_text())


@pytest.fixture(scope="module")
def reference2(tmp_path_factory):
    """Uninterrupted 2-epoch run: what every resumed run must reproduce exactly."""
    d = tmp_path_factory.mktemp("ref2")
    code, _, err = cli(train_args(d, limit=100, epochs=2, seed=4))
    assert code == 0, err
    return d, json.loads((d / "results.json").read_text())


# ---------------------------------------------------------------- outputs

def test_train_writes_model_and_results(run1):
    d, out, res = run1
    assert (d / "model.pt").is_file()
    names = [t.name for t in scenario_tasks("pairwise-mnist")]
    assert res["tasks"] == names and res["scenario"] == "pairwise-mnist" and res["limit"] == 150
    for key in PER_TASK:
        assert len(res[key]) == 5, key
    for i, row in enumerate(res["accuracy_matrix"]):
        assert len(row) == i + 1
        assert all(0.0 <= a <= 1.0 for a in row)
        assert res["t0_accuracy"][i] == row[0]
        # every task's test split holds --limit images: the global accuracy is the row mean
        assert res["global_accuracy"][i] == pytest.approx(sum(row) / len(row))
    assert all(isinstance(s, float) and s >= 0 for s in res["train_seconds"] + res["eval_seconds"])
    assert all(len(l) == 1 for l in res["epoch_loss"])
    assert res["method"] == "hrn" and res["metrics"]["global_accuracy"] == pytest.approx(res["global_accuracy"])
    assert [len(row) for row in res["route_changes"]] == [1, 2, 3, 4, 5]
    assert all(row[-1] == 0.0 for row in res["route_changes"])       # a task against itself
    for usage in res["unit_usage"]:
        assert set(usage) == {"train_unit_visits", "test_unit_visits", "test_route_lengths"}
        assert sum(usage["train_unit_visits"]) >= 150          # every sample selects >= 1 unit
        assert sum(usage["test_route_lengths"]) == 150
        assert len(usage["train_unit_visits"]) == len(usage["test_unit_visits"])
    # printed matrix and final message
    assert "accuracy matrix" in out and f"model written to {d / 'model.pt'}" in out
    for name in names:
        assert f"after {name:>16}:" in out
    model, specs, state = load_checkpoint(d / "model.pt")
    assert state is None                                        # finished: not resumable
    assert [s.classes for s in specs] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert len(model.heads) == 5 and model.num_units == len(res["unit_usage"][-1]["test_unit_visits"])


def test_same_seed_is_deterministic_and_force_overwrites(run1, tmp_path):
    d1, _, res1 = run1
    (tmp_path / "model.pt").write_bytes(b"an older run")
    code, _, err = cli(train_args(tmp_path, "--force"))
    assert code == 0, err
    assert_same_results(res1, json.loads((tmp_path / "results.json").read_text()))
    assert_same_tensors(d1 / "model.pt", tmp_path / "model.pt")


def test_existing_out_needs_resume_or_force(run1, tmp_path, capsys):
    model = tmp_path / "model.pt"
    shutil.copy(run1[0] / "model.pt", model)
    before = model.read_bytes()
    code = main(train_args(tmp_path))
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("hrn-hw: error: ")
    assert "--resume" in err and "--force" in err and "Traceback" not in err
    assert model.read_bytes() == before and not (tmp_path / "results.json").exists()


# ---------------------------------------------------------------- resume

def interrupt_after(monkeypatch, calls: int) -> list:
    """Make train_epoch raise KeyboardInterrupt on its (calls + 1)-th call."""
    real, seen = train_mod.train_epoch, []

    def flaky(*args, **kwargs):
        if len(seen) == calls:
            raise KeyboardInterrupt
        seen.append(args[3])            # task index
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_epoch", flaky)
    return seen


@pytest.mark.parametrize("done, where", [(1, (0, 1)), (2, (1, 0)), (5, (2, 1))],
                         ids=["mid-task-0", "task-boundary", "mid-task-2"])
def test_resume_equals_uninterrupted(reference2, tmp_path, monkeypatch, done, where):
    ref_dir, ref = reference2
    interrupt_after(monkeypatch, done)
    code, _, err = cli(train_args(tmp_path, limit=100, epochs=2, seed=4))
    assert code == 130 and "interrupted" in err
    monkeypatch.undo()
    _, _, state = load_checkpoint(tmp_path / "model.pt")
    assert (state["task"], state["epoch"]) == where
    assert state["run"]["seed"] == 4 and state["run"]["epochs"] == 2
    partial = json.loads((tmp_path / "results.json").read_text()) if where[0] else None
    if partial:
        assert partial["accuracy_matrix"] == ref["accuracy_matrix"][:where[0]]

    code, out, err = cli(train_args(tmp_path, "--resume", limit=100, epochs=2, seed=4))
    assert code == 0, err
    assert f"resuming pairwise-mnist from task {where[0]}, epoch {where[1]}" in out
    res = json.loads((tmp_path / "results.json").read_text())
    assert_same_results(ref, res)
    assert_same_tensors(ref_dir / "model.pt", tmp_path / "model.pt")
    assert load_checkpoint(tmp_path / "model.pt")[2] is None


def test_resume_twice(reference2, tmp_path, monkeypatch):
    ref_dir, ref = reference2
    interrupt_after(monkeypatch, 1)
    assert cli(train_args(tmp_path, limit=100, epochs=2, seed=4))[0] == 130
    monkeypatch.undo()
    interrupt_after(monkeypatch, 2)   # resumed: task 0 epoch 2, task 1 epoch 1, then interrupted
    assert cli(train_args(tmp_path, "--resume", limit=100, epochs=2, seed=4))[0] == 130
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "model.pt")[2]
    assert (state["task"], state["epoch"]) == (1, 1)
    code, _, err = cli(train_args(tmp_path, "--resume", limit=100, epochs=2, seed=4))
    assert code == 0, err
    assert_same_results(ref, json.loads((tmp_path / "results.json").read_text()))
    assert_same_tensors(ref_dir / "model.pt", tmp_path / "model.pt")


def test_resume_finished_model_refused(run1, tmp_path):
    shutil.copy(run1[0] / "model.pt", tmp_path / "model.pt")
    code, _, err = cli(train_args(tmp_path, "--resume"))
    assert code == 2 and len(err.splitlines()) == 1
    assert "no training state" in err


def test_resume_without_checkpoint(tmp_path):
    code, _, err = cli(train_args(tmp_path, "--resume"))
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "model.pt").exists()


# ---------------------------------------------------------------- resume: stored options

@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A resumable checkpoint of reference2's run (limit 100, 2 epochs, seed 4), interrupted after
    its first epoch, written without --results."""
    d = tmp_path_factory.mktemp("interrupted")
    with pytest.MonkeyPatch.context() as mp:
        interrupt_after(mp, 1)
        args = train_args(d, limit=100, epochs=2, seed=4)
        code, _, err = cli(args[:args.index("--results")])
    assert code == 130, err
    assert not (d / "results.json").exists()
    return d / "model.pt"


def resume_copy(interrupted: Path, tmp_path: Path) -> Path:
    shutil.copy(interrupted, tmp_path / "model.pt")
    return tmp_path / "model.pt"


def test_resume_with_omitted_options_and_new_results(reference2, interrupted, tmp_path):
    """Options left out on --resume come from the checkpoint; --results (not stored) given only on
    resume still receives the full results of the run (they travel in the checkpoint)."""
    ref_dir, ref = reference2
    model = resume_copy(interrupted, tmp_path)
    target = tmp_path / "late" / "results.json"
    code, out, err = cli(["train", "--scenario", "pairwise-mnist", "--out", str(model), "--resume",
                          "--results", str(target)])
    assert code == 0, err
    assert "resuming pairwise-mnist from task 0, epoch 1" in out
    res = json.loads(target.read_text())
    assert_same_results(ref, res)
    for key in PER_TASK:
        assert len(res[key]) == 5, key
    assert res["limit"] == 100 and res["seed"] == 4
    assert_same_tensors(ref_dir / "model.pt", model)


@pytest.mark.parametrize("extra, needle", [
    (["--epochs", "3"], "--epochs 3 conflicts with the stored run: {out} was started with --epochs 2; "
                        "omit --epochs or pass --epochs 2"),
    (["--limit", "50"], "--limit 50 conflicts with the stored run: {out} was started with --limit 100"),
    (["--seed", "0"], "--seed 0 conflicts with the stored run: {out} was started with --seed 4"),
    (["--seed", "5"], "--seed 5 conflicts"),
    (["--oracle"], "--oracle conflicts with the stored run: {out} was started without --oracle; omit --oracle"),
    (["--data-dir", "/elsewhere"], "--data-dir /elsewhere conflicts with the stored run: {out} was started "
                                   "without --data-dir"),
], ids=["epochs", "limit", "seed-0", "seed", "oracle", "data-dir"])
def test_resume_refuses_conflicting_options(interrupted, tmp_path, extra, needle):
    model = resume_copy(interrupted, tmp_path)
    before = model.read_bytes()
    code, out, err = cli(["train", "--scenario", "pairwise-mnist", "--out", str(model), "--resume", *extra])
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("hrn-hw: error: --resume: ") and "Traceback" not in err
    assert needle.format(out=model) in err, err
    assert out == "" and model.read_bytes() == before


def test_resume_refuses_other_scenario(interrupted, tmp_path):
    model = resume_copy(interrupted, tmp_path)
    code, _, err = cli(["train", "--scenario", "fashion-mnist", "--out", str(model), "--resume"])
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--scenario fashion-mnist conflicts with the stored run: {model} was started with " \
           "--scenario pairwise-mnist" in err


def test_resume_refuses_other_config(interrupted, tmp_path):
    import yaml
    from hrn_hw.config import builtin_config_path

    model = resume_copy(interrupted, tmp_path)
    d = yaml.safe_load(builtin_config_path("pairwise-mnist").read_text())
    d["training"]["lr"] = 0.5
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(d))
    code, _, err = cli(["train", "--scenario", "pairwise-mnist", "--out", str(model), "--resume",
                        "--config", str(other)])
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--config {other} differs from the config stored in {model} ('pairwise-mnist-hrn')" in err


def test_resume_accepts_matching_explicit_options(reference2, interrupted, tmp_path):
    from hrn_hw.config import builtin_config_path

    ref_dir, ref = reference2
    model = resume_copy(interrupted, tmp_path)
    code, _, err = cli(train_args(tmp_path, "--resume", "--device", "cpu", "--config",
                                  str(builtin_config_path("pairwise-mnist")), limit=100, epochs=2, seed=4))
    assert code == 0, err
    assert_same_results(ref, json.loads((tmp_path / "results.json").read_text()))
    assert_same_tensors(ref_dir / "model.pt", model)


@pytest.mark.parametrize("run_edit, needle", [
    ({"colour": "red"}, "stored run options are not this hrn-hw's (colour)"),
    ({"device": "cuda"}, "trains on cuda, but no CUDA device is available"),
], ids=["unknown-option", "stored-cuda"])
def test_resume_checks_stored_run_options(interrupted, tmp_path, run_edit, needle):
    if "device" in run_edit and torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    data = torch.load(interrupted, weights_only=True)
    data["train_state"]["run"].update(run_edit)
    model = tmp_path / "model.pt"
    torch.save(data, model)
    code, _, err = cli(["train", "--scenario", "pairwise-mnist", "--out", str(model), "--resume"])
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err, err


def test_resume_and_force_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(train_args(tmp_path, "--resume", "--force"))
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# ---------------------------------------------------------------- eval

def test_eval_prints_and_writes_json(run1, tmp_path, capsys):
    d, _, res = run1
    target = tmp_path / "sub" / "eval.json"
    code = main(["eval", str(d / "model.pt"), "--limit", "150", "--results", str(target)])
    out, err = capsys.readouterr()
    assert code == 0, err
    profile, *lines = out.splitlines()
    assert profile == f"{d / 'model.pt'}: hrn, stable profile"        # the bundled config's profile
    names = [t.name for t in scenario_tasks("pairwise-mnist")]
    assert len(lines) == 6
    for line, name in zip(lines, names):
        assert line.strip().startswith(f"{name}: accuracy") and "on 150 test images" in line
    assert lines[-1].strip().startswith("global: accuracy")
    ev = json.loads(target.read_text())
    assert ev["model"] == str(d / "model.pt") and ev["profile"] == "stable" and ev["switches"]["protect_units"]
    assert [r["task"] for r in ev["tasks"]] == names
    for r in ev["tasks"]:
        assert {"accuracy", "samples", "unit_visits", "route_lengths", "eval_seconds"} <= set(r)
        assert r["samples"] == 150
    # same --limit and --seed as training: the same test images, so the last matrix row
    assert [r["accuracy"] for r in ev["tasks"]] == res["accuracy_matrix"][-1]
    assert ev["global_accuracy"] == pytest.approx(res["global_accuracy"][-1])
    for line, acc in zip(lines, res["accuracy_matrix"][-1]):
        assert f"{100 * acc:6.2f}%" in line


# ---------------------------------------------------------------- user errors

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_gpu(run1, tmp_path):
    code, _, err = cli(train_args(tmp_path, "--device", "cuda"))
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("hrn-hw: error: --device cuda") and "CUDA" in err
    assert not (tmp_path / "model.pt").exists()
    code, _, err = cli(["eval", str(run1[0] / "model.pt"), "--device", "cuda"])
    assert code == 2 and len(err.splitlines()) == 1 and "CUDA" in err


@pytest.mark.parametrize("argv, needle", [
    (["train", "--scenario", "cifar-forever", "--out", "x.pt"], "invalid choice"),
    (["train", "--scenario", "pairwise-mnist", "--out", "x.pt", "--epochs", "0"], "must be >= 1"),
    (["train", "--scenario", "pairwise-mnist", "--out", "x.pt", "--limit", "-3"], "must be >= 1"),
    (["train", "--scenario", "pairwise-mnist", "--out", "x.pt", "--device", "tpu"], "invalid choice"),
    (["train", "--scenario", "pairwise-mnist", "--out", "x.pt", "--seed", "-1"], "must lie in [0, 4294967295]"),
    (["train", "--scenario", "pairwise-mnist", "--out", "x.pt", "--seed", "1.5"], "expected an integer"),
    (["train", "--scenario", "pairwise-mnist", "--out", "x.pt", "--seed", str(2**32)], "--seed"),
    (["train", "--scenario", "pairwise-mnist", "--out", "x.pt", "--limit", "ten"], "positive integer"),
    (["eval", "x.pt", "--seed", "-3"], "must lie in"),
    (["train", "--scenario", "pairwise-mnist"], "--out"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_argparse_errors_exit_2(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


def test_config_for_other_scenario(tmp_path):
    from hrn_hw.config import builtin_config_path

    cfg = builtin_config_path("fashion-mnist")
    code, _, err = cli(train_args(tmp_path, "--config", str(cfg)))
    assert code == 2 and len(err.splitlines()) == 1 and "fashion-mnist" in err


@pytest.mark.parametrize("text, needle", [
    ("name: [unclosed\n", "not valid YAML"),
    ("name: x\nscenario: pairwise-mnist\nunits: []\n", "unit group"),
    ("name: x\nscenario: pairwise-mnist\nunits:\n  - {count: 1, in_channels: 1, layers: [{type: lstm}]}\n",
     "lstm"),
])
def test_bad_config_file_exit_2(tmp_path, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, _, err = cli(train_args(tmp_path, "--config", str(cfg)))
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("hrn-hw: error: ") and needle in err
    assert "Traceback" not in err
    assert not (tmp_path / "model.pt").exists()


def test_missing_config_file(tmp_path):
    code, _, err = cli(train_args(tmp_path, "--config", str(tmp_path / "nope.yaml")))
    assert code == 2 and "not found" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("which", ["out", "results", "out-parent-is-file"])
def test_unwritable_outputs_refused_before_training(tmp_path, monkeypatch, which):
    monkeypatch.setattr(train_mod, "train_epoch", lambda *a, **k: pytest.fail("trained anyway"))
    args = train_args(tmp_path)
    if which == "out":
        (tmp_path / "model.pt").mkdir()
        args += ["--force"]
    elif which == "results":
        (tmp_path / "results.json").mkdir()
    else:
        (tmp_path / "file").write_text("x")
        args[args.index("--out") + 1] = str(tmp_path / "file" / "model.pt")
    code, out, err = cli(args)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("hrn-hw: error: "), err
    assert "Traceback" not in err


def test_os_error_is_one_line(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "model.pt"))

    monkeypatch.setattr(train_mod, "train", full)
    code, _, err = cli(train_args(tmp_path))
    assert code == 2
    assert err.splitlines() == [f"hrn-hw: error: No space left on device: {tmp_path / 'model.pt'}"]


def test_eval_results_directory_refused(run1, tmp_path):
    code, _, err = cli(["eval", str(run1[0] / "model.pt"), "--results", str(tmp_path)])
    assert code == 2 and len(err.splitlines()) == 1 and "is a directory" in err
