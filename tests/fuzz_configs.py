"""Random small HRN configs for the property tests (tests/test_config_fuzz.py, `make fuzz`, and
the RTL variant in sim/test_fuzz_rtl.py): hypothesis strategies and the pipeline each drawn
config goes through.

A drawn config is either refused by the validator with one line (ConfigError), or it trains a
few batches of two real Pairwise-MNIST tasks, its batched and oracle routes agree on frozen
bases, it exports, and golden == C-sim (and, in the RTL variant, golden == RTL) bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import strategies as st

LAYER_KINDS = ("conv", "batchnorm", "relu", "leaky_relu", "maxpool", "avgpool", "dropout")


@st.composite
def layer(draw, kind: str) -> dict:
    if kind == "conv":
        return {"type": "conv", "out_channels": draw(st.integers(1, 6)), "kernel": draw(st.integers(1, 7)),
                "stride": draw(st.integers(1, 3)), "padding": draw(st.integers(0, 3))}
    if kind in ("maxpool", "avgpool"):
        k = draw(st.integers(1, 3))
        return {"type": kind, "kernel": k, "stride": draw(st.one_of(st.none(), st.integers(1, 3)))}
    if kind == "leaky_relu":
        return {"type": kind, "slope": draw(st.sampled_from([0.01, 0.1, 0.25]))}
    if kind == "dropout":
        return {"type": kind, "p": draw(st.sampled_from([0.0, 0.2]))}
    return {"type": kind}


@st.composite
def unit_layers(draw) -> list:
    """Mostly the shapes units take (conv, then batchnorm, an activation, a pool, dropout, each
    optional), sometimes any 1-3 layers (which the validator may refuse)."""
    if draw(st.integers(0, 4)) == 0:
        kinds = draw(st.lists(st.sampled_from(LAYER_KINDS), min_size=1, max_size=3))
    else:
        kinds = ["conv"]
        for options in (("batchnorm",), ("relu", "leaky_relu"), ("maxpool", "avgpool"), ("dropout",)):
            if draw(st.booleans()):
                kinds.append(draw(st.sampled_from(options)))
    return [draw(layer(k)) for k in kinds]


@st.composite
def configs(draw) -> dict:
    s = draw(st.sampled_from([16, 32, 64, 128]))
    groups = [{"count": draw(st.integers(1, 2)), "in_channels": draw(st.integers(1, 3)), "layers": draw(unit_layers())}
              for _ in range(draw(st.integers(1, 2)))]
    return {
        "name": "fuzz", "scenario": "pairwise-mnist", "profile": draw(st.sampled_from(["paper", "stable"])),
        "hrn": {"hash_size": s, "basis_size": draw(st.integers(1, 3)), "depth": draw(st.integers(1, 3)),
                "tau_depth": draw(st.sampled_from([1e-5, 1e-3, 0.1])),
                "tau_empty": draw(st.sampled_from([0.0, 0.2, 0.6])),
                "tau_expand": draw(st.sampled_from([0.01, 0.3])),
                "aging_start": draw(st.integers(1, 6)), "aging_rate": draw(st.sampled_from([1.0, 1.2, 3.0])),
                "residue_l1": draw(st.sampled_from([0.0, 1.0])),
                "grad_scaling": draw(st.booleans()), "basis_update": draw(st.booleans())},
        "units": groups,
        "extra_units": [0, draw(st.integers(0, 2))],
        "head": {"hidden": draw(st.sampled_from([[], [8], [12, 6]])), "dropout": draw(st.sampled_from([0.0, 0.2]))},
        "training": {"epochs": [1], "batch_size": draw(st.sampled_from([8, 16])), "lr": 1e-3},
    }


TASKS = 2            # the first two Pairwise-MNIST tasks
TRAIN_IMAGES = 48    # per task: a few batches


def train_config(data: dict, folder: Path, monkeypatch) -> Path | None:
    """Validate `data`; None if the validator refuses it (checked to be one line), else the
    checkpoint of a few batches of training on two real tasks."""
    import hrn_hw.train as train_mod
    from hrn_hw.config import DEFAULT_PROFILE, config_from_dict
    from hrn_hw.errors import ConfigError
    from hrn_hw.scenarios import scenario_tasks

    try:
        cfg = config_from_dict(data, "fuzz config", default_profile=DEFAULT_PROFILE)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz config"), str(exc)
        return None
    specs = scenario_tasks("pairwise-mnist")[:TASKS]
    monkeypatch.setattr(train_mod, "scenario_tasks", lambda name: list(specs))
    out = folder / "model.pt"
    opts = train_mod.RunOptions(scenario="pairwise-mnist", seed=0, limit=TRAIN_IMAGES, epochs=1)
    results = train_mod.train(cfg, opts, out, None, log=lambda *a: None)
    assert len(results["accuracy_matrix"]) == TASKS
    return out


def check_routes(checkpoint: Path, images: int = 24) -> None:
    """On frozen bases the batched and the oracle routing paths agree: routes exactly,
    embeddings within float rounding."""
    from hrn_hw.checkpoint import load_checkpoint
    from hrn_hw.scenarios import load_tasks

    model, specs, _ = load_checkpoint(checkpoint)
    model.eval()
    x = torch.from_numpy(load_tasks(specs, None, images, 0)[0].test_x[:images])
    with torch.no_grad():
        fast, slow = model.route_batched(x), model.route_oracle(x)
    assert torch.equal(fast.routes, slow.routes)
    assert torch.allclose(fast.embedding, slow.embedding, atol=1e-5, rtol=1e-5)


def export_and_verify(checkpoint: Path, out: Path, against: tuple = ("csim",)) -> None:
    """Export (RTL only when it is checked) and compare golden with each of `against`."""
    from hrn_hw.export.pipeline import export
    from hrn_hw.verify import verify_csim, verify_rtl

    export(checkpoint, out, golden_per_task=6, eval_limit=24, calib=32, quiet=True, rtl="rtl" in against)
    for target in against:
        result = verify_rtl(out, jobs=1) if target == "rtl" else verify_csim(out)
        assert result["mismatches"] == 0, (target, result["per_output"], result["first_mismatches"])
        assert not result.get("cycle_model_mismatches"), (target, result["cycle_model_mismatches"])


def describe(data: dict) -> str:
    """A config in one line (for the failure report)."""
    units = "; ".join(f"{g['count']}x in{g['in_channels']} " + ",".join(l["type"] for l in g["layers"])
                      for g in data["units"])
    return f"{data['profile']} s={data['hrn']['hash_size']} m={data['hrn']['basis_size']} d={data['hrn']['depth']} [{units}]"


