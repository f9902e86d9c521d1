"""The continual-learning methods on the one training loop (hrn_hw.cl, hrn_hw.train): every
method trains two tiny tasks and its checkpoint round-trips; a baseline resumes bit for bit;
EWC's penalty and gradient; LwF's distillation targets; ELL's code loss; the `methods:` config
section; unknown methods; `hrn-hw train --method` and `hrn-hw eval` on a baseline."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hrn_hw.train as train_mod
from conftest import interrupt_after_first_epoch, pairwise_config, random_images, run_cli
from hrn_hw.checkpoint import load_checkpoint, load_strategy, save_checkpoint
from hrn_hw.cl.ell import code_loss
from hrn_hw.cl.ewc import ewc_penalty
from hrn_hw.cl.lwf import soft_cross_entropy
from hrn_hw.cl.methods import make_strategy
from hrn_hw.cl.strategy import METHOD_NAMES
from hrn_hw.config import builtin_config_path, config_from_dict, config_to_dict, load_config
from hrn_hw.errors import CheckpointError, ConfigError, HrnError
from hrn_hw.evaluate import evaluate_task
from hrn_hw.scenarios import TaskData, TaskSpec
from hrn_hw.train import RunOptions, train

SPECS = [TaskSpec("a", "mnist", (0, 1)), TaskSpec("b", "mnist", (2, 3))]
DETERMINISTIC = ("accuracy_matrix", "global_accuracy", "t0_accuracy", "epoch_loss", "metrics")


def tiny_tasks(n_train: int = 48, n_test: int = 24) -> list[TaskData]:
    """Two 2-class tasks of random images; the label says whether the image is bright."""
    tasks = []
    for i, spec in enumerate(SPECS):
        x = random_images(n_train + n_test, seed=10 + i).numpy()
        y = (x.reshape(len(x), -1).mean(1) > np.median(x.reshape(len(x), -1).mean(1))).astype(np.int64)
        tasks.append(TaskData(spec, x[:n_train], y[:n_train], x[n_train:], y[n_train:]))
    return tasks


@pytest.fixture
def tiny(monkeypatch):
    """hrn_hw.train trains the two tiny tasks whatever the scenario says."""
    monkeypatch.setattr(train_mod, "scenario_tasks", lambda name: list(SPECS))
    monkeypatch.setattr(train_mod, "load_tasks", lambda specs, data_dir, limit, seed: tiny_tasks())
    return tiny_tasks()


def run(tmp_path, method: str, epochs: int = 1, name: str = "model"):
    opts = RunOptions(scenario="pairwise-mnist", seed=3, epochs=epochs, method=method)
    out, res = tmp_path / f"{name}.pt", tmp_path / f"{name}.json"
    results = train(pairwise_config(), opts, out, res, log=lambda *a: None)
    assert json.loads(res.read_text()) == json.loads(json.dumps(results))
    return out, results


def logits(model, x, t):
    out = model(torch.from_numpy(x), t)
    return out[0] if isinstance(out, tuple) else out


def same_tree(a, b) -> bool:
    """Nested dicts / lists / tensors / plain values equal (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same_tree(x, y) for x, y in zip(a, b))
    return a == b


# ---------------------------------------------------------------- every method on the loop

@pytest.mark.parametrize("method", METHOD_NAMES)
def test_method_trains_two_tasks_and_round_trips(tiny, tmp_path, method):
    out, res = run(tmp_path, method)
    assert res["method"] == method and res["tasks"] == ["a", "b"]
    assert [len(r) for r in res["accuracy_matrix"]] == [1, 2]
    assert res["metrics"]["global_accuracy"] == pytest.approx(res["global_accuracy"])
    assert len(res["metrics"]["forgetting"]) == 2 and res["metrics"]["forgetting"][-1] == 0.0
    assert ("unit_usage" in res) == ("route_changes" in res) == (method == "hrn")
    if method == "hrn":
        assert [len(r) for r in res["route_changes"]] == [1, 2] and res["route_changes"][1][1] == 0.0
        assert all(0.0 <= c <= 1.0 for row in res["route_changes"] for c in row)

    strategy, specs, state = load_strategy(out)
    assert state is None and strategy.name == method and specs == SPECS and not strategy.model.training
    accs = [evaluate_task(strategy.model, t, task.test_x, task.test_y)["accuracy"] for t, task in enumerate(tiny)]
    assert accs == res["accuracy_matrix"][-1]          # the checkpoint holds the trained model

    save_checkpoint(tmp_path / "again.pt", strategy, specs)
    again = load_strategy(tmp_path / "again.pt")[0]
    assert same_tree(strategy.state(), again.state())
    x = tiny[1].test_x
    with torch.no_grad():
        for t in range(2):
            assert torch.equal(logits(strategy.model, x, t), logits(again.model, x, t))
    if method == "hrn":
        assert load_checkpoint(out)[0].num_units == strategy.model.num_units
    else:
        with pytest.raises(CheckpointError, match=f"holds a '{method}' model, not an HRN"):
            load_checkpoint(out)


def test_method_state_is_kept(tiny, tmp_path):
    """EWC keeps one Fisher and anchor per task; ELL one autoencoder per task (code 100 < 144
    features); LwF / ELL drop the snapshot after the task."""
    ewc = load_strategy(run(tmp_path, "ewc", name="ewc")[0])[0]
    assert len(ewc.fishers) == len(ewc.anchors) == 2
    assert set(ewc.fishers[0]) == {n for n, _ in ewc.model.features.named_parameters()}
    assert all((f >= 0).all() for f in ewc.fishers[1].values()) and any(f.sum() > 0 for f in ewc.fishers[1].values())
    ell = load_strategy(run(tmp_path, "ell", name="ell")[0])[0]
    assert ell.snapshot is None and [ae.enc.weight.shape for ae in ell.autoencoders] == [(100, 144)] * 2


@pytest.mark.parametrize("method", ["ell"])
def test_baseline_resume_equals_uninterrupted(tiny, tmp_path, monkeypatch, method):
    """Interrupted in task 1's second epoch (the checkpoint holds the snapshot of task 1's
    start), resumed: the same weights, method state and results as one run."""
    ref_out, ref = run(tmp_path, method, epochs=2, name="ref")
    real, calls = train_mod.train_epoch, []

    def flaky(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, method, epochs=2)
    monkeypatch.setattr(train_mod, "train_epoch", real)
    mid, _, state = load_strategy(tmp_path / "model.pt")
    assert (state["task"], state["epoch"]) == (1, 1) and mid.snapshot is not None and len(mid.autoencoders) == 1
    res = train(None, None, tmp_path / "model.pt", tmp_path / "model.json", resume=True, log=lambda *a: None)
    for key in DETERMINISTIC:
        assert res[key] == ref[key], key
    a, b = load_strategy(ref_out)[0], load_strategy(tmp_path / "model.pt")[0]
    assert same_tree(a.model.state_dict(), b.model.state_dict()) and same_tree(a.state(), b.state())


def test_version_1_run_resumes(tiny, tmp_path, monkeypatch):
    """An HRN run interrupted under the version-1 format (no method, no routes, results without
    metrics and route_changes) finishes as one run would; its route changes against tasks
    finished before are unknown (None)."""
    _, ref = run(tmp_path, "hrn", name="ref")
    real = train_mod.train_epoch
    monkeypatch.setattr(train_mod, "train_epoch", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
                        if a[3] == 1 else real(*a, **k))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "hrn")
    monkeypatch.setattr(train_mod, "train_epoch", real)
    data = torch.load(tmp_path / "model.pt", weights_only=True)
    v1 = {k: v for k, v in data.items() if k not in ("method", "structure", "method_state")}
    v1.update(version=1, **data["structure"])
    st = v1["train_state"]
    assert (st["task"], st["epoch"]) == (1, 0) and len(st.pop("routes")) == 1
    del st["run"]["method"]
    for key in ("method", "metrics", "route_changes"):
        del st["results"][key]
    torch.save(v1, tmp_path / "model.pt")
    res = train(None, None, tmp_path / "model.pt", None, resume=True, log=lambda *a: None)
    for key in ("accuracy_matrix", "epoch_loss", "metrics", "unit_usage", "method"):
        assert res[key] == ref[key], key
    assert res["route_changes"] == [[None], [None, 0.0]]


# ---------------------------------------------------------------- the methods' terms

def trained(method: str, tasks: list[TaskData]):
    """A strategy after task 0 (one epoch by the loop's own functions), task 1 begun."""
    torch.manual_seed(0)
    s = make_strategy(method, pairwise_config(), seed=0)
    s.build((1, 28, 28))
    s.begin_task(0, tasks[0], False)
    opt = train_mod.make_optimizer(s, 0, s.cfg)
    train_mod.train_epoch(s, opt, tasks[0], 0, 16, np.random.default_rng(0), "cpu", False, "t0")
    s.end_task(0, tasks[0], "cpu")
    return s


def test_ewc_penalty_zero_at_anchor_and_gradient_matches_finite_difference():
    tasks = tiny_tasks()
    s = trained("ewc", tasks)
    s.begin_task(1, tasks[1], False)
    x = torch.from_numpy(tasks[1].train_x[:8])
    assert s.penalty(x, None, 1).item() == 0.0                      # right after task 0: at the anchor
    # the penalty's gradient against central differences, in float64, away from the anchors
    g = torch.Generator().manual_seed(1)
    params = {n: (p.detach().double() + 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64)).requires_grad_()
              for n, p in s.encoder_params().items()}
    fishers = [{n: f.double() + torch.rand(f.shape, generator=g, dtype=torch.float64) for n, f in s.fishers[0].items()}
               for _ in range(2)]
    anchors = [{n: a.double() for n, a in s.anchors[0].items()},
               {n: a.double() + 0.05 for n, a in s.anchors[0].items()}]
    lam = s.cfg.methods.ewc.ewc_lambda
    grads = torch.autograd.grad(ewc_penalty(params, fishers, anchors, lam), list(params.values()))
    eps = 1e-6
    for (name, p), grad in zip(params.items(), grads):
        for i in (0, p.numel() // 2, p.numel() - 1):
            with torch.no_grad():
                p.view(-1)[i] += eps
                up = float(ewc_penalty(params, fishers, anchors, lam))
                p.view(-1)[i] -= 2 * eps
                down = float(ewc_penalty(params, fishers, anchors, lam))
                p.view(-1)[i] += eps
            assert grad.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7), (name, i)
        expected = lam * sum(f[name] * (p.detach() - a[name]) for f, a in zip(fishers, anchors))
        assert torch.allclose(grad, expected)


def test_ewc_fisher_uses_the_labels():
    """Empirical Fisher: the mean squared gradient of log p(label | x) over the samples."""
    tasks = tiny_tasks()
    s = trained("ewc", tasks)
    model = s.model.eval()
    x, y = tasks[0].train_x, tasks[0].train_y
    params = s.encoder_params()
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(len(x)):
        nll = F.cross_entropy(model(torch.from_numpy(x[i:i + 1]), 0), torch.from_numpy(y[i:i + 1]))
        for (n, _), gr in zip(params.items(), torch.autograd.grad(nll, list(params.values()))):
            expected[n] += gr.square() / len(x)
    for n in params:
        assert torch.allclose(s.fishers[0][n], expected[n], rtol=1e-5, atol=1e-12), n


def test_lwf_targets_are_the_old_heads_outputs_on_current_data():
    tasks = tiny_tasks()
    s = trained("lwf", tasks)
    before = copy.deepcopy(s.model).eval()
    s.begin_task(1, tasks[1], False)
    x = torch.from_numpy(tasks[1].train_x[:16])
    T = s.cfg.methods.lwf.temperature
    with torch.no_grad():
        want = F.softmax(before(x, 0) / T, dim=1)
    opt = train_mod.make_optimizer(s, 1, s.cfg)
    train_mod.train_epoch(s, opt, tasks[1], 1, 16, np.random.default_rng(1), "cpu", False, "t1")
    with torch.no_grad():
        assert not torch.equal(s.model(x, 0), before(x, 0))            # the model moved on ...
        (got,) = s.distill_targets(s.snapshot.encode(x))
    assert torch.equal(got, want)                                       # ... its targets did not
    s.model.eval()
    with torch.no_grad():
        z = s.model.encode(x)
        term = s.penalty(x, z, 1)
    assert torch.allclose(term, s.cfg.methods.lwf.alpha * soft_cross_entropy(s.model.heads[0](z), want, T))
    assert T == 2.0 and s.cfg.methods.lwf.alpha == 1.0


def test_ell_code_loss_zero_when_features_unchanged():
    tasks = tiny_tasks()
    s = trained("ell", tasks)
    s.begin_task(1, tasks[1], False)
    x = torch.from_numpy(tasks[1].train_x[:16])
    s.model.eval()                       # the model is still the snapshot: same features f = f*
    with torch.no_grad():
        z, z_old = s.model.encode(x), s.snapshot.encode(x)
        assert torch.equal(z, z_old)
        assert float(code_loss(s.autoencoders, z, z_old)) == 0.0
        assert float(code_loss(s.autoencoders, z + 0.5, z_old)) > 0.0
        distill = s.cfg.methods.ell.distill * sum(
            soft_cross_entropy(s.model.heads[k](z), p, s.cfg.methods.ell.temperature)
            for k, p in enumerate(s.distill_targets(z_old)))
        assert torch.equal(s.penalty(x, z, 1), distill + s.cfg.methods.ell.alpha * 0.0)


# ---------------------------------------------------------------- configs and names

def test_paper_settings_per_scenario():
    want = {"pairwise-mnist": (1024, 100), "fashion-mnist": (400, 300), "mnist-fashion-pairs": (400, 300),
            "svhn-icifar100": (250, 2800)}
    for name, (lam, code) in want.items():
        m = load_config(builtin_config_path(name)).methods
        assert (m.ewc.ewc_lambda, m.ewc.fisher_samples, m.ell.code_size) == (lam, 200, code), name
        assert (m.lwf.alpha, m.lwf.temperature, m.ell.temperature, m.ell.ae_epochs) == (1.0, 2.0, 3.0, 2)
        data = config_to_dict(load_config(builtin_config_path(name)))
        del data["methods"]
        assert config_from_dict(data).methods == m                 # left out: the same paper values


@pytest.mark.parametrize("methods, needle", [
    ({"sgd": {}}, "methods: unknown key(s) sgd; allowed: ewc, lwf, ell"),
    ({"ewc": {"lambda": 3}}, "methods.ewc: unknown key(s) lambda; allowed: ewc_lambda, fisher_samples"),
    ({"lwf": {"temperature": 0}}, "methods.lwf.temperature must be > 0"),
    ({"ell": {"code_size": 2.5}}, "methods.ell.code_size: expected an integer"),
    ({"ewc": 5}, "methods.ewc: expected a mapping"),
])
def test_bad_methods_section(methods, needle):
    data = config_to_dict(pairwise_config())
    data["methods"] = methods
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "cfg.yaml")
    assert str(info.value).startswith("cfg.yaml: ") and needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_method(tmp_path, monkeypatch):
    with pytest.raises(HrnError) as info:
        make_strategy("sgd", pairwise_config())
    assert str(info.value) == "unknown method 'sgd'; known: hrn, vc, ewc, lwf, ell"
    monkeypatch.setattr(train_mod, "load_tasks", lambda *a: pytest.fail("loaded data for an unknown method"))
    with pytest.raises(HrnError, match="unknown method 'sgd'"):
        train(pairwise_config(), RunOptions("pairwise-mnist", method="sgd"), tmp_path / "m.pt")
    with pytest.raises(HrnError, match="--oracle routes an HRN"):
        train(pairwise_config(), RunOptions("pairwise-mnist", method="vc", oracle=True), tmp_path / "m.pt")


# ---------------------------------------------------------------- the command line

cli = run_cli


def test_cli_train_and_eval_a_baseline(tmp_path):
    model, results = tmp_path / "model.pt", tmp_path / "results.json"
    code, out, err = cli(["train", "--scenario", "pairwise-mnist", "--method", "ewc", "--limit", 40, "--epochs", 1,
                          "--out", model, "--results", results])
    assert code == 0, err
    res = json.loads(results.read_text())
    assert res["method"] == "ewc" and len(res["accuracy_matrix"]) == 5 and "unit_usage" not in res
    assert "accuracy matrix" in out
    code, out, err = cli(["eval", model, "--limit", 40, "--results", tmp_path / "eval.json"])
    assert code == 0, err
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["method"] == "ewc" and [r["accuracy"] for r in ev["tasks"]] == res["accuracy_matrix"][-1]
    code, out, err = cli(["eval", model, "--oracle"])
    assert code == 2 and len(err.splitlines()) == 1 and "--oracle routes an HRN one sample at a time" in err, err
    code, out, err = cli(["export", model, "-o", tmp_path / "x"])         # (export logs its steps first)
    assert code == 2 and "Traceback" not in err and not (tmp_path / "x").exists()
    assert err.splitlines()[-1] == f"hrn-hw: error: {model}: holds a 'ewc' model, not an HRN (export and bench " \
                                   "take HRN checkpoints; hrn-hw eval takes every method's)"
    code, _, err = cli(["train", "--scenario", "pairwise-mnist", "--method", "sgd", "--out", tmp_path / "m.pt"])
    assert code == 2 and "invalid choice: 'sgd'" in err


def test_cli_resume_refuses_another_method(tmp_path, monkeypatch):
    interrupt_after_first_epoch(monkeypatch)
    argv = ["train", "--scenario", "pairwise-mnist", "--method", "lwf", "--limit", 40, "--epochs", 1,
            "--out", tmp_path / "model.pt"]
    assert cli(argv)[0] == 130
    code, _, err = cli(argv[:4] + ["vc"] + argv[5:] + ["--resume"])
    assert code == 2 and len(err.splitlines()) == 1
    assert "--method vc conflicts with the stored run" in err and "was started with --method lwf" in err
