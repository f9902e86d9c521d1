"""`hrn-hw export` / `hrn-hw verify` from the command line, on a small trained MNIST model.

Happy path: every artifact, manifest fields, the float-vs-fixed report, verify against the g++
C simulation (0 mismatches, `-n`). Bad input (corrupt, foreign, code-carrying, NaN/Inf or
unexportable checkpoints, missing g++, existing OUT, bad --precision files, non-exports,
corrupted golden vectors, failures while writing): one `hrn-hw: error:` line, exit 2 (1 for
mismatches), no traceback, and nothing written: no OUT, no staging directory beside it, an
existing OUT untouched.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hrn_hw.export.atomic as atomic
import hrn_hw.export.pipeline as pipeline
from conftest import ROOT, run_cli

QUICK = ["--golden", "4", "--eval-limit", "20", "--calib", "16", "--no-rtl"]   # exports meant to finish fast
ARTIFACTS = ("manifest.json", "weights.npz", "golden/vectors.npz", "golden/inputs.bin", "report.md",
             "export.json", "hls/Makefile", "hls/csim_main.cpp", "hls/build_prj.tcl",
             "hls/firmware/hrn_top.cpp", "hls/firmware/hrn_top.h", "hls/firmware/parameters.h",
             "hls/firmware/weights.h")
RTL_ARTIFACTS = ("rtl/hrn_top.v", "rtl/rtl.json")        # not written with --no-rtl
GOLDEN_PER_TASK, TASKS = 40, 5


cli = run_cli


def error_line(err: str) -> str:
    """The one `hrn-hw: error:` line, last on stderr; anything before it is export progress."""
    assert "Traceback" not in err
    lines = err.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("hrn-hw: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert all(line.startswith(("[", "      ")) for line in lines[:-1]), err
    return errors[0]


def snapshot(directory: Path) -> dict:
    """Every file under `directory` with its bytes and mtime (to prove a directory untouched)."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    """Staging (.OUT.tmp-*) or old (.OUT.old-*) directories left beside OUT."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def refused_untouched(args: list, message: str, out: Path) -> str:
    """`hrn-hw ARGS` exits 2 with one error line holding `message` and leaves OUT exactly as it
    was, with nothing staged beside it; returns stderr."""
    before = snapshot(out)
    code, _, err = cli(args)
    assert code == 2 and message in error_line(err)
    assert snapshot(out) == before and leftovers(out) == []
    return err


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() and not out.is_symlink()
    assert leftovers(out) == []


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    code, _, err = cli(["train", "--scenario", "pairwise-mnist", "--limit", "300", "--epochs", "1",
                        "--out", path])
    assert code == 0, err
    return path


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """(OUT, exit code, stdout, stderr) of one export with 40 golden images per task."""
    out = tmp_path_factory.mktemp("export") / "out"
    code, stdout, stderr = cli(["export", model, "-o", out, "--golden", GOLDEN_PER_TASK,
                                "--eval-limit", "200", "--calib", "128"])
    return out, code, stdout, stderr


@pytest.fixture(scope="module")
def verified(exported):
    """The first `verify --against csim` of the export: it builds the C simulation (once)."""
    out = exported[0]
    assert exported[1] == 0, exported[3]
    return cli(["verify", out, "--against", "csim"])


@pytest.fixture
def built_copy(verified, exported, tmp_path) -> Path:
    """A private copy of the verified export, C simulation binary included (mtimes kept: no rebuild)."""
    assert verified[0] == 0, verified[2]
    dst = tmp_path / "copy"
    shutil.copytree(exported[0], dst)
    return dst


@pytest.fixture
def payload(model) -> dict:
    return torch.load(model, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- happy path

def test_export_exit_0_and_summary_line(exported):
    out, code, stdout, stderr = exported
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert stdout.startswith(f"exported to {out} in ")
    assert "worst float-to-fixed accuracy drop" in stdout and str(out / "report.md") in stdout
    assert "[6/6] generating the RTL" in stderr
    assert leftovers(out) == []


def test_export_writes_every_artifact(exported):
    out = exported[0]
    for rel in ARTIFACTS + RTL_ARTIFACTS:
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel


def test_manifest_and_export_json(exported, model):
    out = exported[0]
    man = json.loads((out / "manifest.json").read_text())
    assert man["format"] == "hrn-hw/export" and man["version"] == 1
    assert man["source"]["checkpoint"] == str(model) and man["source"]["scenario"] == "pairwise-mnist"
    assert man["input"]["shape"] == [1, 28, 28]
    assert man["hrn"]["hash_size"] == 300 and man["hrn"]["depth"] == 3
    summary = json.loads((out / "export.json").read_text())
    assert summary["golden_samples"] == GOLDEN_PER_TASK * TASKS
    assert summary["golden_per_task"] == GOLDEN_PER_TASK and summary["calibration_images"] == 128
    assert summary["eval_note"] == "first 200 per task"
    assert [t["name"] for t in summary["tasks"]] == ["mnist-0/1", "mnist-2/3", "mnist-4/5", "mnist-6/7",
                                                     "mnist-8/9"]
    with np.load(out / "golden" / "vectors.npz") as z:
        assert set(z.files) == {"pixels", "tasks", "labels", "embedding", "routes", "logits"}
        assert len(z["pixels"]) == GOLDEN_PER_TASK * TASKS
        assert z["tasks"].tolist() == [t for t in range(TASKS) for _ in range(GOLDEN_PER_TASK)]


def test_report_has_float_vs_fixed_table(exported):
    report = (exported[0] / "report.md").read_text()
    assert "## Float (PyTorch reference) vs fixed point (golden model)" in report
    assert "| task | images | float acc % | fixed acc % | drop (points) | route agreement % |" in report
    for name in ("mnist-0/1", "mnist-8/9"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} | 200 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6
        float_acc, fixed_acc, drop, agree = (float(c) for c in cells[2:])
        assert 0 <= float_acc <= 100 and 0 <= fixed_acc <= 100 and 0 <= agree <= 100
        assert drop == pytest.approx(float_acc - fixed_acc, abs=0.011)
    assert "saturation" in report.lower()


def test_verify_csim_all_match(verified, exported):
    code, stdout, stderr = verified
    assert code == 0, stderr
    n = GOLDEN_PER_TASK * TASKS
    assert f"{n} compared, 0 mismatches" in stdout
    result = json.loads((exported[0] / "verify_csim.json").read_text())
    assert result["against"] == "csim" and result["compared"] == n and result["mismatches"] == 0
    assert result["per_output"] == {"embedding": 0, "routes": 0, "logits": 0}


def test_verify_n_compares_first_n(built_copy):
    code, stdout, stderr = cli(["verify", built_copy, "--against", "csim", "-n", "10"])
    assert code == 0, stderr
    assert "10 compared, 0 mismatches" in stdout
    assert json.loads((built_copy / "verify_csim.json").read_text())["compared"] == 10


@pytest.mark.parametrize("n", ["0", "-3", "x"])
def test_verify_bad_n_is_usage_error(built_copy, n):
    code, _, err = cli(["verify", built_copy, "-n", n])
    assert code == 2 and "Traceback" not in err and "-n" in err


# ---------------------------------------------------------------- corrupted golden vectors

def _flip_logit(export_dir: Path, sample: int) -> None:
    path = export_dir / "golden" / "vectors.npz"
    with np.load(path) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["logits"][sample, 0] += 1
    np.savez(path, **arrays)


def test_verify_flipped_logit_exit_1(built_copy):
    _flip_logit(built_copy, 7)
    code, stdout, stderr = cli(["verify", built_copy, "--against", "csim"])
    assert code == 1
    n = GOLDEN_PER_TASK * TASKS
    assert f"{n} compared, 1 mismatches" in stdout
    assert "Traceback" not in stderr and "first samples: [7]" in stderr
    result = json.loads((built_copy / "verify_csim.json").read_text())
    assert result["mismatches"] == 1 and result["per_output"] == {"embedding": 0, "routes": 0, "logits": 1}
    assert result["first_mismatches"] == [7]
    # -n that stops before the bad sample sees none; one that includes it sees it
    assert cli(["verify", built_copy, "-n", "7"])[0] == 0
    code, stdout, _ = cli(["verify", built_copy, "-n", "8"])
    assert code == 1 and "8 compared, 1 mismatches" in stdout


# ---------------------------------------------------------------- bad checkpoints

class Exploit:
    """Unpickling it runs code: creates a marker directory."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _random_bytes(model, dst, payload):
    dst.write_bytes(bytes(random.Random(5).randrange(256) for _ in range(4096)))


def _truncated_zip(model, dst, payload):
    raw = model.read_bytes()
    dst.write_bytes(raw[:len(raw) // 2])


def _empty(model, dst, payload):
    dst.write_bytes(b"")


def _foreign_dict(model, dst, payload):
    torch.save({"weights": torch.zeros(3), "epoch": 4}, dst)


def _text_file(model, dst, payload):
    dst.write_text("name: pairwise-mnist-hrn\nthis is not a model\n")


def _code_torch(model, dst, payload):
    torch.save(Exploit(dst.parent / "MARKER"), dst)


def _code_raw_pickle(model, dst, payload):
    with open(dst, "wb") as f:
        pickle.dump(Exploit(dst.parent / "MARKER"), f)


def _first_conv_weight(sd: dict) -> str:
    return next(k for k in sd if k.endswith("weight") and sd[k].dim() == 4)


def _nan_weight(model, dst, payload):
    payload["state_dict"][_first_conv_weight(payload["state_dict"])].view(-1)[3] = float("nan")
    torch.save(payload, dst)


def _inf_bias(model, dst, payload):
    payload["state_dict"]["heads.0.out.bias"].fill_(float("inf"))
    torch.save(payload, dst)


def _unknown_layer(model, dst, payload):
    payload["config"]["units"][0]["layers"][2]["type"] = "attention"
    torch.save(payload, dst)


def _reorder_layers(payload: dict, order: list[int]) -> None:
    """Reorder every unit group's layers (new position i holds old layer order[i]), weights too."""
    for group in payload["config"]["units"]:
        group["layers"] = [group["layers"][i] for i in order]
    sd, new = payload["state_dict"], {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "units" and parts[2] == "layers":
            parts[3] = str(order.index(int(parts[3])))
        new[".".join(parts)] = value
    payload["state_dict"] = new


def _batchnorm_after_activation(model, dst, payload):
    _reorder_layers(payload, [0, 2, 1])         # conv, leaky_relu, batchnorm
    torch.save(payload, dst)


def _activation_before_conv(model, dst, payload):
    _reorder_layers(payload, [2, 0, 1])         # leaky_relu, conv, batchnorm
    torch.save(payload, dst)


def _directory(model, dst, payload):
    dst.mkdir()


def _missing(model, dst, payload):
    pass


BAD_MODELS = {
    "random bytes": (_random_bytes, "not a PyTorch checkpoint"),
    "truncated zip": (_truncated_zip, "corrupt or truncated checkpoint"),
    "empty file": (_empty, "corrupt or truncated checkpoint"),
    "foreign torch dict": (_foreign_dict, "not an hrn-hw checkpoint"),
    "text file": (_text_file, "not a PyTorch checkpoint"),
    "pickled code (torch.save)": (_code_torch, "refused"),
    "pickled code (raw pickle)": (_code_raw_pickle, "refused"),
    "nan weight": (_nan_weight, "NaN"),
    "inf bias": (_inf_bias, "Inf"),
    "unknown layer type": (_unknown_layer, "unsupported unit layer type 'attention'"),
    "batchnorm after activation": (_batchnorm_after_activation, "a unit's layers must be conv, then"),
    "activation before conv": (_activation_before_conv, "a unit's layers must be conv, then"),
    "directory": (_directory, "no such checkpoint file"),
    "missing": (_missing, "no such checkpoint file"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_one_line_exit_2_nothing_written(case, model, payload, tmp_path):
    make, expected = BAD_MODELS[case]
    bad = tmp_path / "in" / "model.pt"
    bad.parent.mkdir()
    make(model, bad, payload)
    out = tmp_path / "out"
    code, stdout, err = cli(["export", bad, "-o", out, *QUICK])
    assert code == 2, err
    line = error_line(err)
    assert expected in line
    assert str(bad) in line                              # load errors name the file
    assert stdout == ""
    assert_nothing_written(out)
    assert not (bad.parent / "MARKER").exists()          # the pickled code never ran


def _negative_bn_variance(model, dst, payload):
    payload["state_dict"]["units.0.layers.1.running_var"][0] = -4.0
    torch.save(payload, dst)


def _huge_weight(model, dst, payload):
    payload["state_dict"][_first_conv_weight(payload["state_dict"])].view(-1)[0] = 3e38
    torch.save(payload, dst)


@pytest.mark.parametrize("make, expected", [(_negative_bn_variance, "unit0.0.weight: not finite after BatchNorm folding"),
                                           (_huge_weight, "is too large for fixed point")])
def test_finite_but_unexportable_weights(make, expected, model, payload, tmp_path):
    """Finite weights the loader accepts but no fixed-point format holds (a negative batchnorm
    variance folds to NaN; 3e38 needs 128 integer bits): exit 2, one line naming the tensor,
    nothing written."""
    bad = tmp_path / "model.pt"
    make(model, bad, payload)
    out = tmp_path / "out"
    code, stdout, err = cli(["export", bad, "-o", out, *QUICK])
    assert code == 2 and stdout == ""
    assert expected in error_line(err)
    assert_nothing_written(out)


def test_reordered_checkpoint_is_refused_at_load(model, payload, tmp_path):
    """A checkpoint whose unit layers no layer of the flow implements (batchnorm after the
    activation) is refused when it is read (eval, export, resume alike), in one line."""
    from hrn_hw.checkpoint import load_checkpoint
    from hrn_hw.errors import CheckpointError

    bad = tmp_path / "model.pt"
    _batchnorm_after_activation(model, bad, payload)
    with pytest.raises(CheckpointError, match=r"a unit's layers must be conv, then") as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_bad_model_with_force_leaves_existing_out_untouched(exported, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported[0], out)
    bad = tmp_path / "bad.pt"
    _random_bytes(None, bad, None)
    refused_untouched(["export", bad, "-o", out, "--force", *QUICK], "not a PyTorch checkpoint", out)


def test_console_entry_corrupt_model_one_line(model, tmp_path):
    """The real process: the progress line, then exactly one error line; exit 2, nothing written."""
    bad = tmp_path / "model.pt"
    _truncated_zip(model, bad, None)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "hrn_hw.cli", "export", str(bad), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"[1/6] loading {bad}",
                                        f"hrn-hw: error: {bad}: corrupt or truncated checkpoint "
                                        "(incomplete zip archive)"]
    assert proc.stdout == ""
    assert_nothing_written(out)


# ---------------------------------------------------------------- missing g++

def test_cxx_missing(model, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    out = tmp_path / "out"
    code, _, err = cli(["export", model, "-o", out, *QUICK])
    assert code == 2
    line = error_line(err)
    assert "no-such-g++ not found" in line and "apt-get install g++" in line
    assert err.count("\n") == 1                            # fails before any work: no progress lines
    assert_nothing_written(out)


def test_gxx_not_on_path(model, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "out"
    code, _, err = cli(["export", model, "-o", out, *QUICK])
    assert code == 2 and "g++ not found on PATH" in error_line(err)
    assert_nothing_written(out)


def test_cxx_missing_with_force_keeps_out(exported, model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(exported[0], out)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    refused_untouched(["export", model, "-o", out, "--force", *QUICK], "not found", out)


def test_verify_without_gxx(built_copy, tmp_path, monkeypatch):
    (built_copy / "verify_csim.json").unlink()
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    code, stdout, err = cli(["verify", built_copy])
    assert code == 2 and "no-such-g++ not found" in error_line(err) and stdout == ""
    assert not (built_copy / "verify_csim.json").exists()


# ---------------------------------------------------------------- existing OUT

def test_out_exists_without_force(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    err = refused_untouched(["export", model, "-o", out, *QUICK], "already exists; pass --force to replace it", out)
    assert err.count("\n") == 1


def test_out_is_a_file(model, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file\n")
    for extra in ([], ["--force"]):
        code, _, err = cli(["export", model, "-o", out, *extra, *QUICK])
        assert code == 2, extra
        assert ("already exists" if not extra else "is not a directory") in error_line(err)
        assert out.read_text() == "a file\n" and leftovers(out) == []


def test_out_parent_is_a_file(model, tmp_path):
    parent = tmp_path / "plain"
    parent.write_text("x")
    code, _, err = cli(["export", model, "-o", parent / "out", *QUICK])
    assert code == 2 and "is not a directory" in error_line(err)
    assert parent.read_text() == "x"


def test_force_replaces_previous_export(exported, model, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported[0], out)
    (out / "stale.txt").write_text("from before\n")
    (out / "hls" / "build").mkdir(exist_ok=True)
    code, stdout, err = cli(["export", model, "-o", out, "--force", *QUICK])
    assert code == 0, err
    assert stdout.startswith(f"exported to {out}")
    assert not (out / "stale.txt").exists() and not (out / "hls" / "build").exists()
    assert not (out / "verify_csim.json").exists()
    for rel in ARTIFACTS:
        assert (out / rel).is_file(), rel
    summary = json.loads((out / "export.json").read_text())
    assert summary["golden_per_task"] == 4 and summary["golden_samples"] == 4 * TASKS
    with np.load(out / "golden" / "vectors.npz") as z:
        assert len(z["pixels"]) == 4 * TASKS
    assert leftovers(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_force_replaces_symlink_to_export_and_keeps_its_target(exported, model, tmp_path):
    target = tmp_path / "real"
    shutil.copytree(exported[0], target)
    before = snapshot(target)
    out = tmp_path / "out"
    out.symlink_to(target)
    code, _, err = cli(["export", model, "-o", out, "--force", *QUICK])
    assert code == 0, err
    assert out.is_dir() and not out.is_symlink() and (out / "manifest.json").is_file()
    assert snapshot(target) == before
    assert leftovers(out) == []


def test_force_refuses_directory_that_is_not_an_export(model, tmp_path):
    """--force replaces an export; a directory of other files (a typo'd -o) is never deleted."""
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("mine\n")
    shutil.copy(model, out / "model.pt")
    err = refused_untouched(["export", out / "model.pt", "-o", out, "--force", *QUICK], "not an hrn-hw export", out)
    assert err.count("\n") == 1


def test_force_replaces_empty_directory(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = cli(["export", model, "-o", out, "--force", *QUICK])
    assert code == 0, err
    assert (out / "manifest.json").is_file() and leftovers(out) == []


# ---------------------------------------------------------------- failure while writing OUT

def _fail_render(exc):
    def render(qm, directory):
        directory.mkdir(parents=True)
        (directory / "partial.cpp").write_text("// half written\n")
        raise exc
    return render


@pytest.mark.parametrize("force", [False, True])
def test_failure_while_writing_leaves_nothing(exported, model, tmp_path, monkeypatch, force):
    out = tmp_path / "out"
    if force:
        shutil.copytree(exported[0], out)
        before = snapshot(out)
    monkeypatch.setattr(pipeline, "render_project", _fail_render(OSError(28, "No space left on device")))
    code, stdout, err = cli(["export", model, "-o", out, *(["--force"] if force else []), *QUICK])
    assert code == 2 and stdout == ""
    assert "No space left on device" in error_line(err)
    if force:
        assert snapshot(out) == before and leftovers(out) == []
    else:
        assert_nothing_written(out)


def test_interrupt_while_writing_leaves_nothing(model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "render_project", _fail_render(KeyboardInterrupt()))
    code, _, err = cli(["export", model, "-o", out, *QUICK])
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert_nothing_written(out)


def test_failed_final_rename_restores_old_out(exported, model, tmp_path, monkeypatch):
    """--force: if moving the new export into place fails, the old OUT comes back."""
    out = tmp_path / "out"
    shutil.copytree(exported[0], out)
    real_rename = Path.rename

    def rename(self, target):
        if self.name.startswith(".out.tmp-") and Path(target) == out:
            raise OSError(13, "Permission denied", str(target))
        return real_rename(self, target)

    monkeypatch.setattr(atomic.Path, "rename", rename)
    refused_untouched(["export", model, "-o", out, "--force", *QUICK], "Permission denied", out)


# ---------------------------------------------------------------- --precision

BAD_PRECISION = {
    "unknown tensor name": ("unit0.0.wieght: {frac: 12}\n", "unknown tensor name 'unit0.0.wieght'"),
    "bad yaml": ("h: {width: 16, frac: [14\n", "not valid YAML/JSON"),
    "frac out of range": ("unit0.0.out: {frac: 99}\n", "frac must be an integer in [-40, 40], got 99"),
    "width out of range": ("h: {width: 64}\n", "width must be an integer in [2, 32], got 64"),
    "unknown key": ("h: {bits: 12}\n", "give a mapping with some of frac, rounding, width"),
    "bad rounding": ("default: {rounding: nearest}\n", "rounding must be one of rnd, trn"),
    "not a mapping": ("- h\n- basis\n", "maps tensor names to formats"),
    "not utf-8": (b"h: {frac: 14}\n\xff\xfe\x00\n", "not valid YAML/JSON"),
    "inconsistent formats": ("basis: {frac: 4}\ncoef: {frac: 4}\n", "basis frac + coef frac"),
    "output coarser than its accumulator": ("unit0.0.out: {width: 8, frac: -40}\n",
                                            "unit0.0.out: format ap_fixed<8, 48, AP_RND, AP_SAT> is too coarse"),
}


@pytest.mark.parametrize("case", list(BAD_PRECISION))
def test_bad_precision_file(case, model, tmp_path):
    text, expected = BAD_PRECISION[case]
    prec = tmp_path / "formats.yaml"
    if isinstance(text, bytes):
        prec.write_bytes(text)
    else:
        prec.write_text(text)
    out = tmp_path / "out"
    code, stdout, err = cli(["export", model, "-o", out, "--precision", prec, *QUICK])
    assert code == 2, err
    assert expected in error_line(err) and stdout == ""
    assert_nothing_written(out)


def test_missing_precision_file(model, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(["export", model, "-o", out, "--precision", tmp_path / "nope.yaml", *QUICK])
    assert code == 2 and "cannot read precision file" in error_line(err)
    assert_nothing_written(out)


# ---------------------------------------------------------------- verify on a non-export

def test_verify_missing_directory(tmp_path):
    code, stdout, err = cli(["verify", tmp_path / "nope"])
    assert code == 2 and "no such export directory" in error_line(err) and stdout == ""


def test_verify_file_is_not_an_export(model):
    code, _, err = cli(["verify", model])
    assert code == 2 and "no such export directory" in error_line(err)


def test_verify_directory_that_is_not_an_export(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    code, _, err = cli(["verify", tmp_path])
    assert code == 2 and "not an hrn-hw export" in error_line(err)
    assert not (tmp_path / "verify_csim.json").exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


BROKEN_EXPORTS = {
    "foreign manifest": (lambda d: (d / "manifest.json").write_text('{"format": "other"}'),
                         "not an hrn-hw export manifest"),
    "truncated weights.npz": (lambda d: _truncate(d / "weights.npz"), "weights.npz"),
    "truncated vectors.npz": (lambda d: _truncate(d / "golden" / "vectors.npz"), "vectors.npz"),
    "garbage vectors.npz": (lambda d: (d / "golden" / "vectors.npz").write_text("garbage\n"), "vectors.npz"),
    "no golden vectors": (lambda d: shutil.rmtree(d / "golden"), "no golden vectors"),
    "no hls project": (lambda d: shutil.rmtree(d / "hls"), "no HLS project"),
}


@pytest.mark.parametrize("case", list(BROKEN_EXPORTS))
def test_verify_broken_export(case, built_copy):
    breaker, expected = BROKEN_EXPORTS[case]
    (built_copy / "verify_csim.json").unlink()
    breaker(built_copy)
    code, stdout, err = cli(["verify", built_copy])
    assert code == 2, err
    assert expected in error_line(err) and stdout == ""
    assert err.count("\n") == 1
    assert not (built_copy / "verify_csim.json").exists()
