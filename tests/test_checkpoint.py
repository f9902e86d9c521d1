"""model.pt: bit-exact round trip, weights-only loading, atomic writes, and every bad file
(missing, empty, random, truncated, foreign, pickled code, newer format, NaN, inconsistent
tensors, unsupported config) refused with CheckpointError / a one-line `hrn-hw` error, exit 2."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from hrn_hw import checkpoint as ckpt
from hrn_hw.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint
from hrn_hw.cli import main
from hrn_hw.config import config_to_dict
from hrn_hw.errors import CheckpointError, HrnError
from hrn_hw.scenarios import TaskSpec, scenario_tasks
from conftest import ROOT, random_images, trained_model

TASKS = scenario_tasks("pairwise-mnist")[:2]


def _model():
    """A briefly trained HRN with grown units (initialised bases, BN stats) and two heads."""
    model = trained_model(seed=3, extra_units=2, steps=10)
    model.add_head(2)
    model.eval()
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, path) of a real checkpoint; tests must not modify the file."""
    model = _model()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, TASKS)
    return model, path


def _payload(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        assert torch.equal(sa[k], sb[k]), k
    assert a.unit_groups == b.unit_groups
    assert a.hash_seeds.tolist() == b.hash_seeds.tolist()
    assert a.seed == b.seed
    assert a.cfg == b.cfg
    assert len(a.heads) == len(b.heads)


# ---------------------------------------------------------------- round trip

def test_round_trip_is_bit_exact(saved):
    model, path = saved
    loaded, tasks, state = load_checkpoint(path)
    _assert_same_model(model, loaded)
    assert tasks == TASKS and all(isinstance(t, TaskSpec) for t in tasks)
    assert [t.classes for t in tasks] == [(0, 1), (2, 3)]
    assert state is None
    assert not loaded.training
    assert loaded.num_units == model.num_units == 6
    assert len(set(loaded.hash_seeds.tolist())) == loaded.num_units + 1   # distinct seeds


def test_round_trip_same_routes_and_logits(saved):
    model, path = saved
    loaded, _, _ = load_checkpoint(path)
    model.eval()
    x = random_images(48, seed=77)
    with torch.no_grad():
        for task in range(2):
            for oracle in (False, True):
                la, ra = model(x, task, oracle=oracle)
                lb, rb = loaded(x, task, oracle=oracle)
                assert torch.equal(la, lb), (task, oracle)
                assert torch.equal(ra.routes, rb.routes)
                assert torch.equal(ra.embedding, rb.embedding)
                assert torch.equal(ra.residue_norms, rb.residue_norms)
        # several units are visited: the round trip is checked on a non-trivial routing
        assert len(set(ra.routes[ra.routes >= 0].tolist())) >= 2


def test_round_trip_keeps_train_state(tmp_path):
    model = _model()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    state = {"run": {"scenario": "pairwise-mnist", "seed": 1, "limit": None, "oracle": False},
             "task": 1, "epoch": 2, "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
             "results": {"accuracy_matrix": [[0.5]]}, "progress": {"losses": [1.5], "visits": [1, 2]}}
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, TASKS, state)
    loaded, _, back = load_checkpoint(path)
    _assert_same_model(model, loaded)
    assert back["run"] == state["run"] and back["results"] == state["results"]
    assert back["task"] == 1 and back["epoch"] == 2 and back["progress"] == state["progress"]
    assert torch.equal(back["torch_rng"], state["torch_rng"])
    opt2 = torch.optim.Adam(list(loaded.parameters()), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt2.state_dict()["state"][0][k]))


def test_plain_weights_only_torch_load(saved):
    model, path = saved
    data = torch.load(path, weights_only=True)
    assert data["format"] == FORMAT and data["version"] == VERSION == 2
    assert data["method"] == "hrn" and data["method_state"] == {}
    assert data["config"] == config_to_dict(model.cfg)
    assert data["structure"] == {"hash_seeds": model.hash_seeds.tolist(), "unit_groups": model.unit_groups}
    assert data["tasks"] == [{"name": t.name, "dataset": t.dataset, "classes": list(t.classes)} for t in TASKS]
    assert set(data["state_dict"]) == set(model.state_dict())
    assert all(v.device.type == "cpu" for v in data["state_dict"].values())


# ---------------------------------------------------------------- atomic writes

def test_save_leaves_no_temp_files(tmp_path):
    model = _model()
    path = tmp_path / "sub" / "model.pt"          # parent created on demand
    save_checkpoint(path, model, TASKS)
    save_checkpoint(path, model, TASKS)           # overwrite in place
    assert sorted(os.listdir(path.parent)) == ["model.pt"]
    load_checkpoint(path)


@pytest.mark.parametrize("exc", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failed_save_keeps_old_file_and_no_temp(tmp_path, monkeypatch, exc):
    model = _model()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, TASKS)
    before = path.read_bytes()
    real_save = torch.save

    def half_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        Path(f).write_bytes(Path(f).read_bytes()[:1000])   # a partial write, then the failure
        raise exc

    monkeypatch.setattr(ckpt.torch, "save", half_save)
    model.add_head(2)
    with pytest.raises(type(exc)):
        save_checkpoint(path, model, TASKS + [scenario_tasks("pairwise-mnist")[2]])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pt"]
    load_checkpoint(path)


# ---------------------------------------------------------------- bad files

class Exploit:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _rewrite(src: Path, dst: Path, edit) -> None:
    data = copy.deepcopy(_payload(src))
    edit(data)
    torch.save(data, dst)


def _first_weight(sd: dict) -> str:
    return next(k for k in sd if k.endswith("weight") and sd[k].dim() == 4)


def _bad_missing(src, dst):
    pass   # dst is never written


def _bad_empty(src, dst):
    dst.write_bytes(b"")


def _bad_random(src, dst):
    import random
    dst.write_bytes(bytes(random.Random(5).randrange(256) for _ in range(4096)))


def _bad_truncated(src, dst):
    raw = src.read_bytes()
    dst.write_bytes(raw[:len(raw) // 2])


def _bad_truncated_tail(src, dst):
    dst.write_bytes(src.read_bytes()[:-200])


def _bad_foreign(src, dst):
    torch.save({"a": torch.zeros(1)}, dst)


def _bad_tensor(src, dst):
    torch.save(torch.zeros(3, 3), dst)


def _bad_code_torch(src, dst):
    torch.save(Exploit(dst.parent / "MARKER"), dst)


def _bad_code_raw_pickle(src, dst):
    with open(dst, "wb") as f:
        pickle.dump(Exploit(dst.parent / "MARKER"), f)


def _bad_code_in_payload(src, dst):
    # a genuine-looking payload whose train_state is a code-running object
    _rewrite(src, dst, lambda d: d.__setitem__("train_state", Exploit(dst.parent / "MARKER")))


def _bad_newer(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("version", 999))


def _bad_version_string(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("version", "1"))


def _bad_no_version(src, dst):
    _rewrite(src, dst, lambda d: d.pop("version"))


def _bad_format(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("format", "someone-else/checkpoint"))


def _bad_nan(src, dst):
    def edit(d):
        sd = d["state_dict"]
        sd[_first_weight(sd)].view(-1)[3] = float("nan")
    _rewrite(src, dst, edit)


def _bad_inf(src, dst):
    _rewrite(src, dst, lambda d: d["state_dict"]["heads.0.out.bias"].fill_(float("-inf")))


def _bad_missing_key(src, dst):
    _rewrite(src, dst, lambda d: d["state_dict"].pop(_first_weight(d["state_dict"])))


def _bad_extra_key(src, dst):
    _rewrite(src, dst, lambda d: d["state_dict"].__setitem__("units.99.layers.0.weight", torch.zeros(1)))


def _bad_shape(src, dst):
    def edit(d):
        sd = d["state_dict"]
        k = _first_weight(sd)
        sd[k] = torch.zeros(sd[k].shape[0] + 1, *sd[k].shape[1:])
    _rewrite(src, dst, edit)


def _bad_non_tensor(src, dst):
    _rewrite(src, dst, lambda d: d["state_dict"].__setitem__("heads.0.out.bias", [0.0, 0.0]))


def _bad_layer_type(src, dst):
    _rewrite(src, dst, lambda d: d["config"]["units"][0]["layers"][0].__setitem__("type", "transformer"))


def _bad_config_key(src, dst):
    _rewrite(src, dst, lambda d: d["config"]["hrn"].__setitem__("warp_factor", 9))


def _bad_unit_group(src, dst):
    _rewrite(src, dst, lambda d: d["structure"].__setitem__("unit_groups", [7] * len(d["structure"]["unit_groups"])))


def _bad_unit_count(src, dst):
    _rewrite(src, dst, lambda d: d["structure"].__setitem__("unit_groups", d["structure"]["unit_groups"][:-1]))


def _bad_tasks(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("tasks", d["tasks"][:1]))   # one head fewer than weights


def _bad_payload_list(src, dst):
    torch.save([FORMAT, VERSION], dst)


def _bad_version_bool(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("version", True))   # bool is an int subclass


def _bad_foreign_zip(src, dst):
    import zipfile
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("readme.txt", "not a model")


def _bad_int_weight(src, dst):
    def edit(d):
        sd = d["state_dict"]
        k = _first_weight(sd)
        sd[k] = sd[k].round().to(torch.int64)     # same shape, integer dtype: torch would cast it
    _rewrite(src, dst, edit)


def _bad_float_count(src, dst):
    _rewrite(src, dst, lambda d: d["state_dict"].__setitem__("pool.count", d["state_dict"]["pool.count"].double()))


def _bad_count_above(src, dst):
    _rewrite(src, dst, lambda d: d["state_dict"]["pool.count"].__setitem__(0, 4))   # basis_size is 3


def _bad_count_negative(src, dst):
    _rewrite(src, dst, lambda d: d["state_dict"]["pool.count"].__setitem__(1, -1))


def _bad_train_state(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("train_state", "resume me"))


def _bad_train_state_run(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("train_state", {"run": ["pairwise-mnist"], "task": 1}))


def _bad_train_state_rng(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("train_state", {"run": {}, "task": 1, "torch_rng": [1, 2]}))


def _bad_config_not_mapping(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("config", "pairwise"))


def _bad_config_conv_kernel(src, dst):
    _rewrite(src, dst, lambda d: d["config"]["units"][0]["layers"][0].__setitem__("kernel", 0))


BAD = {
    "missing file": (_bad_missing, "no such"),
    "empty file": (_bad_empty, "corrupt or truncated"),
    "random bytes": (_bad_random, "not a PyTorch checkpoint (corrupt or foreign file)"),
    "foreign zip": (_bad_foreign_zip, "not a PyTorch checkpoint"),
    "truncated half": (_bad_truncated, "corrupt or truncated"),
    "truncated tail": (_bad_truncated_tail, "corrupt or truncated"),
    "foreign torch file": (_bad_foreign, "not an hrn-hw checkpoint"),
    "plain tensor": (_bad_tensor, "not an hrn-hw checkpoint"),
    "list payload": (_bad_payload_list, "not an hrn-hw checkpoint"),
    "code via torch.save": (_bad_code_torch, "refused"),
    "code via raw pickle": (_bad_code_raw_pickle, "refused"),
    "code inside payload": (_bad_code_in_payload, "refused"),
    "newer version": (_bad_newer, "999"),
    "string version": (_bad_version_string, "version"),
    "no version": (_bad_no_version, "version"),
    "bool version": (_bad_version_bool, "invalid format version True"),
    "other format tag": (_bad_format, "not an hrn-hw checkpoint"),
    "nan weight": (_bad_nan, "NaN"),
    "inf bias": (_bad_inf, "NaN or Inf"),
    "missing key": (_bad_missing_key, "Missing key"),
    "unexpected key": (_bad_extra_key, "Unexpected key"),
    "wrong shape": (_bad_shape, "size mismatch"),
    "non-tensor entry": (_bad_non_tensor, "not a tensor"),
    "unsupported layer": (_bad_layer_type, "transformer"),
    "unknown config key": (_bad_config_key, "warp_factor"),
    "unit group out of range": (_bad_unit_group, "inconsistent"),
    "unit count mismatch": (_bad_unit_count, "inconsistent"),
    "head count mismatch": (_bad_tasks, "inconsistent"),
    "integer weight": (_bad_int_weight, "has dtype int64, expected float32"),
    "float pool.count": (_bad_float_count, "has dtype float64, expected int64"),
    "pool.count above basis_size": (_bad_count_above, "pool.count"),
    "negative pool.count": (_bad_count_negative, "pool.count"),
    "train_state not a mapping": (_bad_train_state, "train_state"),
    "train_state.run not a mapping": (_bad_train_state_run, "train_state.run"),
    "train_state.torch_rng not a tensor": (_bad_train_state_rng, "torch_rng"),
    "config not a mapping": (_bad_config_not_mapping, "config"),
    "config conv kernel zero": (_bad_config_conv_kernel, "kernel"),
}


@pytest.fixture(params=sorted(BAD), ids=lambda s: s.replace(" ", "-"))
def bad_file(request, saved, tmp_path):
    build, needle = BAD[request.param]
    dst = tmp_path / "bad.pt"
    build(saved[1], dst)
    return request.param, dst, needle


def test_bad_file_raises_checkpoint_error(bad_file):
    name, path, needle = bad_file
    marker = path.parent / "MARKER"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert isinstance(info.value, HrnError) and info.value.exit_code == 2
    assert "\n" not in msg and needle in msg, msg
    assert msg.startswith(f"{path}: ") and msg.count(str(path)) == 1, msg   # the path once, in front
    assert len(msg) < 400
    assert not marker.exists(), "unpickling ran the embedded code"


def test_bad_file_through_cli_eval(bad_file, capsys):
    name, path, _ = bad_file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # stderr cleanliness of warnings: see the test below
        code = main(["eval", str(path)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hrn-hw: error: "), err
    assert "Traceback" not in err and out == ""
    assert not (path.parent / "MARKER").exists()


@pytest.mark.parametrize("build", [
    _bad_empty, _bad_random, _bad_truncated, _bad_code_torch, _bad_newer, _bad_code_raw_pickle,
    _bad_foreign_zip, _bad_int_weight,
])
def test_bad_file_emits_no_warnings(build, saved, tmp_path):
    """A real CLI run prints any warning on stderr: a bad file must give exactly one line."""
    dst = tmp_path / "bad.pt"
    build(saved[1], dst)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError):
            load_checkpoint(dst)
    assert [str(w.message) for w in caught] == []


def test_raw_pickle_through_real_cli_one_line(tmp_path):
    """A plain pickle.dump file: torch warns 'Detected pickle protocol' unless silenced; the real
    process must print only our error line."""
    bad = tmp_path / "model.pt"
    _bad_code_raw_pickle(None, bad)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "hrn_hw.cli", "eval", str(bad)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"hrn-hw: error: {bad}: refused: this raw or legacy pickle holds "
                                        "pickled code or objects other than tensors (not an hrn-hw checkpoint)"]
    assert not (tmp_path / "MARKER").exists()


def _as_version_1(data: dict) -> dict:
    """A version-2 HRN payload in the version-1 layout (no method, structure or method_state)."""
    v1 = {k: v for k, v in data.items() if k not in ("method", "structure", "method_state")}
    v1.update(version=1, **data["structure"])
    return v1


def test_version_1_checkpoint_loads(saved, tmp_path):
    """A checkpoint of the format before strategies (version 1) loads as the same HRN."""
    old = tmp_path / "v1.pt"
    torch.save(_as_version_1(_payload(saved[1])), old)
    model, tasks, state = load_checkpoint(old)
    _assert_same_model(saved[0], model)
    assert tasks == TASKS and state is None


def test_version_1_resumable_checkpoint(saved, tmp_path):
    """A version-1 run in progress (its run options lack `method`) reads as an HRN run."""
    data = _payload(saved[1])
    data["train_state"] = {"run": {"scenario": "pairwise-mnist", "seed": 0}, "task": 1, "epoch": 0,
                           "results": {}, "progress": None, "optimizer": None, "torch_rng": torch.get_rng_state()}
    old = tmp_path / "v1.pt"
    torch.save(_as_version_1(data), old)
    strategy, _, state = ckpt.load_strategy(old)
    assert strategy.name == "hrn" and state["run"] == {"scenario": "pairwise-mnist", "seed": 0}


def _bad_method(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("method", "sgd"))


def _bad_method_state(src, dst):
    _rewrite(src, dst, lambda d: d.__setitem__("method_state", {"fishers": []}))


@pytest.mark.parametrize("build, needle", [(_bad_method, "unknown method 'sgd' (known: hrn, vc, ewc, lwf, ell)"),
                                           (_bad_method_state, "inconsistent checkpoint")],
                         ids=["unknown-method", "state-of-another-method"])
def test_bad_method_fields(saved, tmp_path, build, needle):
    bad = tmp_path / "bad.pt"
    build(saved[1], bad)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert str(info.value).startswith(f"{bad}: ") and needle in str(info.value), str(info.value)


def test_random_bytes_are_not_called_pickled_code(saved, tmp_path):
    bad = tmp_path / "bad.pt"
    _bad_random(saved[1], bad)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert "refused" not in str(info.value) and "pickled" not in str(info.value)


def test_legacy_format_checkpoint_loads(saved, tmp_path):
    """A genuine checkpoint in torch's legacy (non-zip) format is a pickle stream, not refused."""
    legacy = tmp_path / "legacy.pt"
    torch.save(_payload(saved[1]), legacy, _use_new_zipfile_serialization=False)
    model, tasks, _ = load_checkpoint(legacy)
    _assert_same_model(saved[0], model)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_saved_file_mode_follows_umask(tmp_path, umask):
    model = _model()
    path = tmp_path / "model.pt"
    old = os.umask(umask)
    try:
        save_checkpoint(path, model, TASKS)
        save_checkpoint(path, model, TASKS)        # the overwrite too
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_config_error_names_path_once(saved, tmp_path):
    bad = tmp_path / "p.pt"
    _bad_config_key(saved[1], bad)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert str(info.value) == f"{bad}: config: hrn: unknown key(s) warp_factor; allowed: " + \
        "hash_size, basis_size, depth, tau_depth, tau_empty, tau_expand, aging_start, aging_rate, " \
        "residue_l1, grad_scaling, basis_update, basis_lock, protect_units, orthogonal_bases, avoid_task_energy"


def test_read_train_state(saved, tmp_path):
    assert ckpt.read_train_state(saved[1]) is None
    bad = tmp_path / "bad.pt"
    _bad_train_state_run(saved[1], bad)
    with pytest.raises(CheckpointError, match="train_state.run"):
        ckpt.read_train_state(bad)


def test_exploit_is_live(tmp_path):
    """The code-carrying files are real threats: an unrestricted unpickler runs them."""
    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(Exploit(marker)))
    assert marker.exists()


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path)


def test_console_entry_corrupt_checkpoint_exit_2(saved, tmp_path):
    """The real process: exit 2, exactly one stderr line, no traceback."""
    bad = tmp_path / "model.pt"
    _bad_truncated(saved[1], bad)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "hrn_hw.cli", "eval", str(bad)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hrn-hw: error: ") and "corrupt or truncated" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
