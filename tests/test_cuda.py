"""The reference on a CUDA device (skipped where torch sees none, as in CI).

On the GPU the batched, frozen and oracle routing paths agree as they do on the CPU; a model
moved to the GPU takes the routes of its CPU copy; `hrn-hw train --device cuda` is reproducible
and its checkpoint evaluates on the CPU with the accuracy it has on the GPU."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from test_cli_train import assert_same_results, cli, train_args
from test_reference_fastpath import assert_identical
from test_routing import MODELS, batch_for, frozen

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

if torch.cuda.is_available():     # before the first CUDA operation (cuBLAS reads it once)
    from hrn_hw.device import exact_cuda
    exact_cuda()


@pytest.mark.parametrize("spec", MODELS, ids=["paper", "8units", "aged"])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_routing_paths_agree_on_cuda(spec, n):
    model = frozen(spec).cuda()
    x = batch_for(n, seed=500 + n).cuda()
    with torch.no_grad():
        fast, batched, oracle = model.route(x), model.route_batched(x), model.route_oracle(x)
    assert torch.equal(fast.routes, batched.routes) and torch.equal(batched.routes, oracle.routes)
    torch.testing.assert_close(batched.embedding, oracle.embedding, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.embedding, batched.embedding, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spec", MODELS, ids=["paper", "8units", "aged"])
def test_frozen_path_is_the_batched_path_bit_for_bit_on_cuda(spec):
    model = frozen(spec).cuda()
    x = batch_for(64, seed=564).cuda()
    with torch.no_grad():
        assert_identical(model.route(x), model.route_batched(x))     # as on the CPU


@pytest.mark.parametrize("spec", MODELS, ids=["paper", "8units", "aged"])
def test_cuda_model_routes_as_its_cpu_copy(spec):
    """Float arithmetic differs between the devices (no bit-exact contract there), the routes not."""
    cpu = frozen(spec)
    gpu = copy.deepcopy(cpu).cuda()
    x = batch_for(128, seed=77)
    with torch.no_grad():
        logits_c, rc = cpu(x, 0)
        logits_g, rg = gpu(x.cuda(), 0)
    assert torch.equal(rc.routes, rg.routes.cpu())
    torch.testing.assert_close(rg.embedding.cpu(), rc.embedding, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits_g.cpu(), logits_c, rtol=1e-4, atol=1e-4)


def test_cli_training_on_cuda_is_reproducible_and_evaluates_on_cpu(tmp_path):
    runs = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        code, _, err = cli(train_args(d, "--device", "cuda", limit=200, epochs=2, seed=3))
        assert code == 0, err
        runs.append(json.loads((d / "results.json").read_text()))
    assert_same_results(runs[0], runs[1])
    state = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    assert all(t.device.type == "cpu" for t in state.values())
    accuracy = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"eval-{device}.json"
        code, _, err = cli(["eval", str(tmp_path / "a" / "model.pt"), "--device", device, "--results", str(out)])
        assert code == 0, err
        accuracy[device] = [t["accuracy"] for t in json.loads(out.read_text())["tasks"]]
    assert accuracy["cpu"] == accuracy["cuda"] and len(accuracy["cpu"]) == 5


def test_avoid_task_energy_on_cuda():
    """The stable profile's hash moments and the subspace new vectors avoid, on the GPU: the
    same new basis vector as on the CPU."""
    from hrn_hw.reference.bases import BasisPool

    vectors = []
    for dev in ("cpu", "cuda"):
        pool = BasisPool(2, 3, 8, 5, 1.2, 0.9, 0.01, True, True, False, 0.9).to(dev)
        pool.bases[0, 0, 0] = 1.0
        pool.count[0] = 1
        old = torch.zeros(64, 8, device=dev)
        old[:48, 0] = 1.0
        old[48:, 1] = 1.0
        used = torch.zeros(64, 2, dtype=torch.bool, device=dev)
        used[:, 1] = True
        pool.recording = True
        pool.select(old, used, train=True)
        pool.close_task()
        h = torch.zeros(1, 8, device=dev)
        h[0, 1], h[0, 2] = 0.6, 0.8
        pool.select(h, torch.zeros(1, 2, dtype=torch.bool, device=dev), train=True)
        vectors.append(pool.bases[1, 0].cpu())
    assert torch.allclose(vectors[0], vectors[1], atol=1e-6) and abs(float(vectors[0][2])) == pytest.approx(1.0)
