"""Training profiles (docs/design.md section 2b, docs/semantics.md "Training profiles"): the config's
`profile:` sets the switch defaults, a given switch overrides it, `hrn-hw train --profile`
selects one, checkpoints / results / resume keep it; and each `stable` mechanism does what its
line in docs/semantics.md says, on a hand-built case."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import hrn_hw.train as train_mod
from conftest import interrupt_after_first_epoch, pairwise_config, random_images, run_cli
from hrn_hw.checkpoint import load_strategy
from hrn_hw.cl.hrn import HrnStrategy
from hrn_hw.config import builtin_config_path, config_from_dict, config_to_dict, load_config
from hrn_hw.errors import ConfigError
from hrn_hw.profiles import PROFILE_SWITCHES, TRAINING_SWITCHES
from hrn_hw.reference.hrn import HRN
from test_cl_methods import SPECS, tiny_tasks


def test_profile_sets_switch_defaults_and_a_given_switch_wins(tmp_path):
    stable = load_config(builtin_config_path("pairwise-mnist"))
    paper = load_config(builtin_config_path("pairwise-mnist"), "paper")
    assert (stable.profile, paper.profile) == ("stable", "paper")
    assert {k: v for k, v in stable.switches.items() if v != paper.switches[k]} == PROFILE_SWITCHES["stable"]
    assert set(stable.switches) == set(TRAINING_SWITCHES)
    data = config_to_dict(paper)
    assert config_from_dict(data) == paper                       # round trip: the profile is kept
    data = {k: v for k, v in data.items() if k != "profile"}
    data["hrn"] = {"basis_lock": False}
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(data))
    assert load_config(mine).profile == "stable"                 # a config file's default
    assert load_config(mine).hrn.basis_lock is False             # its own switch wins
    assert config_from_dict(data).profile == "paper"             # a stored config from before profiles
    with pytest.raises(ConfigError, match=r"mine.yaml: profile must be one of paper, stable, got 'fast'$"):
        load_config(mine, "fast")



@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(train_mod, "scenario_tasks", lambda name: list(SPECS))
    monkeypatch.setattr(train_mod, "load_tasks", lambda specs, data_dir, limit, seed: tiny_tasks())


def test_profile_through_train_checkpoint_results_and_resume(tiny, tmp_path, monkeypatch):
    """Interrupted after one epoch, a paper-profile run refuses --profile stable on resume,
    resumes with its own profile, and its checkpoint, results and eval say paper."""
    out, res = tmp_path / "m.pt", tmp_path / "r.json"
    real = interrupt_after_first_epoch(monkeypatch)
    argv = ["train", "--scenario", "pairwise-mnist", "--epochs", "1", "--out", out, "--results", res]
    assert run_cli(argv + ["--profile", "paper"])[0] == 130
    monkeypatch.setattr(train_mod, "train_epoch", real)
    code, _, err = run_cli(argv + ["--profile", "stable", "--resume"])
    assert code == 2 and err.count("\n") == 1
    assert err.strip().endswith("trains the paper profile; omit --profile or pass --profile paper")
    code, _, err = run_cli(argv + ["--profile", "paper", "--resume"])
    assert code == 0, err
    results = json.loads(res.read_text())
    assert results["profile"] == "paper" and results["switches"]["basis_lock"] is False
    strategy = load_strategy(out)[0]
    assert strategy.cfg == load_config(builtin_config_path("pairwise-mnist"), "paper")
    code, out_text, err = run_cli(["eval", out, "--results", tmp_path / "e.json"])
    assert code == 0, err
    assert "paper profile" in out_text and json.loads((tmp_path / "e.json").read_text())["profile"] == "paper"
    code, _, err = run_cli(["train", "--scenario", "pairwise-mnist", "--epochs", "1", "--out", tmp_path / "s.pt"])
    assert code == 0, err
    stable = load_strategy(tmp_path / "s.pt")[0]
    assert stable.cfg.profile == "stable" and bool(stable.model.pool.locked.any())   # the bundled default


# ---------------------------------------------------------------- the stable mechanisms

def _tiny_hrn(**switches) -> HRN:
    cfg = pairwise_config(**switches)
    torch.manual_seed(0)
    model = HRN(cfg, seed=0)
    model.add_head(2)
    return model


def _moved_after_task_1(protect: bool) -> tuple[set, set]:
    """(units locked after task 0, units whose weights or BN buffers task 1 changed)."""
    model = _tiny_hrn(protect_units=protect, basis_lock=True)
    strategy = HrnStrategy.around(model)
    y = torch.randint(0, 2, (32,), generator=torch.Generator().manual_seed(0))
    model.train()
    strategy.batch_loss(random_images(32, seed=1), y, 0)[0].backward()   # initialises units
    assert model.protected() == []
    strategy.end_task(0, None, "cpu")
    locked = set(torch.nonzero(model.pool.locked).flatten().tolist())
    assert locked and set(model.protected()) == (locked if protect else set())
    before = {k: v.clone() for k, v in model.units.state_dict().items()}
    model.add_head(2)
    opt = torch.optim.Adam(strategy.trainable(1), lr=1e-2)
    model.train()
    assert all(model.units[u].training != protect for u in locked)
    for _ in range(3):
        opt.zero_grad()
        strategy.batch_loss(random_images(32, seed=2), y, 1)[0].backward()
        opt.step()
    after = model.units.state_dict()
    return locked, {int(k.split(".")[0]) for k in before if not torch.equal(before[k], after[k])}


def test_protected_units_keep_weights_and_batchnorm_statistics():
    locked, moved = _moved_after_task_1(protect=True)
    assert not moved & locked                    # weights and BN buffers as task 0 left them
    locked, moved = _moved_after_task_1(protect=False)
    assert moved & locked                        # (without the switch, task 1 retrains them)


@pytest.mark.parametrize("orthogonal", [False, True])
def test_orthogonal_bases_keep_new_vectors_off_the_locked_spans(orthogonal):
    """Unit 0 (basis e0) is locked; a hash 0.6 e0 + 0.8 e1 starts unit 1. With the switch, unit
    1's vector is e1 (orthogonal to e0): a sample with energy > 1/2 on unit 0 (here e0 itself:
    1.0) then has energy < 1/2 on unit 1 (here 0), and keeps its route; without it, 0.36."""
    from hrn_hw.reference.bases import BasisPool

    pool = BasisPool(3, 3, 8, 5, 1.2, 0.9, 0.01, True, True, orthogonal)
    pool.bases[0, 0, 0] = 1.0
    pool.count[0] = 1
    pool.lock_initialised()
    h = torch.zeros(1, 8)
    h[0, 0], h[0, 1] = 0.6, 0.8                       # energy 0.36 < tau_empty**2 = 0.81: starts unit 1
    sel, ok, _, _ = pool.select(h, torch.zeros(1, 3, dtype=torch.bool), train=True)
    assert sel.tolist() == [1] and int(pool.count[1]) == 1
    e0 = torch.zeros(8)
    e0[0] = 1.0
    energy = float((pool.bases[1, 0] @ e0) ** 2)
    assert energy == pytest.approx(0.0 if orthogonal else 0.36, abs=1e-6)
    assert float(pool.bases[1, 0].norm()) == pytest.approx(1.0)


@pytest.mark.parametrize("avoid", [0.0, 0.9])
def test_avoid_task_energy_keeps_new_vectors_off_earlier_tasks_hashes(avoid):
    """Task 0 routes hashes that live in span(e0, e1) (energy 0.8 / 0.2 there) through unit 0
    (basis e0). After it, a hash 0.6 e1 + 0.8 e2 starts unit 1. With avoid_task_energy 0.9 the
    earlier hashes' subspace holding 90 % of their energy is span(e0, e1), so unit 1's vector is
    e2 and no task-0 hash has energy on it; without the switch (and without orthogonal_bases)
    the vector is the hash itself and task 0's e1-heavy hashes have 0.36 of theirs there."""
    from hrn_hw.reference.bases import BasisPool

    pool = BasisPool(2, 3, 8, 5, 1.2, 0.9, 0.01, True, True, False, avoid)
    pool.bases[0, 0, 0] = 1.0
    pool.count[0] = 1
    old = torch.zeros(64, 8)
    old[:48, 0] = 1.0                                 # 48 hashes e0, 16 hashes e1: 0.75 / 0.25 of the energy
    old[48:, 1] = 1.0
    used = torch.zeros(64, 2, dtype=torch.bool)
    used[:, 1] = True                                 # (only unit 0 may take them: no initialisation)
    pool.recording = True                             # (the task's last epoch: HrnStrategy.begin_epoch)
    pool.select(old, used, train=True)
    pool.close_task()
    assert bool(pool.locked[0]) and not bool(pool.locked[1])
    h = torch.zeros(1, 8)
    h[0, 1], h[0, 2] = 0.6, 0.8                       # energy 0 on unit 0: starts unit 1
    sel, ok, _, _ = pool.select(h, torch.zeros(1, 2, dtype=torch.bool), train=True)
    assert sel.tolist() == [1] and int(pool.count[1]) == 1
    energy_e1 = float(pool.bases[1, 0, 1] ** 2)
    assert energy_e1 == pytest.approx(0.0 if avoid else 0.36, abs=1e-6)
    assert float(pool.bases[1, 0].norm()) == pytest.approx(1.0)


def test_hash_moments_round_trip_and_an_older_checkpoint_loads(tmp_path):
    """The moments live in the pool's state (a resumed task keeps them); a stable checkpoint
    from before avoid_task_energy (no moment buffers) loads with none recorded."""
    from hrn_hw.reference.bases import BasisPool

    pool = BasisPool(2, 3, 8, 5, 1.2, 0.9, 0.01, True, True, False, 0.95)
    pool.bases[0, 0, 0] = 1.0
    pool.count[0] = 1
    pool.select(torch.eye(8)[:2], torch.zeros(2, 2, dtype=torch.bool), train=True)
    assert int(pool.task_hashes) == 0                 # not the task's last epoch: nothing recorded
    pool.recording = True
    pool.select(torch.eye(8)[:3], torch.zeros(3, 2, dtype=torch.bool), train=True)
    state = pool.state_dict()
    assert int(state["task_hashes"]) == 3 and float(state["task_moment"].trace()) == pytest.approx(3.0)
    again = BasisPool(2, 3, 8, 5, 1.2, 0.9, 0.01, True, True, False, 0.95)
    again.load_state_dict(state, strict=True)
    assert torch.equal(again.task_moment, pool.task_moment)
    older = {k: v for k, v in state.items() if k not in BasisPool.MOMENTS}
    again = BasisPool(2, 3, 8, 5, 1.2, 0.9, 0.01, True, True, False, 0.95)
    again.load_state_dict(older, strict=True)
    assert int(again.task_hashes) == 0 and not bool(again.old_moment.any())
    paper = BasisPool(2, 3, 8, 5, 1.2, 0.9, 0.01)
    assert not set(BasisPool.MOMENTS) & set(paper.state_dict())   # paper profile: no new state


@pytest.mark.parametrize("avoid", [0.0, 0.95])
def test_only_the_last_epoch_records_hash_moments(avoid):
    """HrnStrategy.begin_epoch turns recording on for the task's last epoch, with the switch."""
    strategy = HrnStrategy(pairwise_config(avoid_task_energy=avoid), 0)
    strategy.build()
    seen = []
    for e in range(3):
        strategy.begin_epoch(0, e, 3)
        seen.append(strategy.model.pool.recording)
    assert seen == [False, False, bool(avoid)]
