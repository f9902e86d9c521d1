"""Scenarios (task lists, label remapping, --limit) and configs (bundled paper configs build HRNs
that run on their scenario's images; malformed configs raise ConfigError; dict round trip)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import hrn_hw.scenarios as scen
from hrn_hw.config import (
    Config,
    builtin_config_path,
    config_from_dict,
    config_to_dict,
    load_config,
)
from hrn_hw.data import dataset_shape, load_dataset
from hrn_hw.errors import ConfigError, HrnError
from hrn_hw.scenarios import SCENARIOS, TaskSpec, load_tasks, scenario_tasks
from hrn_hw.reference.hrn import HRN

CONFIG_DIR = Path(scen.__file__).resolve().parent / "configs"


# ---------------------------------------------------------------- task lists

def test_scenario_names():
    assert set(SCENARIOS) == {"pairwise-mnist", "fashion-mnist", "svhn-icifar100", "mnist-fashion-pairs"}


def test_pairwise_mnist_tasks():
    tasks = scenario_tasks("pairwise-mnist")
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert {t.dataset for t in tasks} == {"mnist"}
    assert [t.name for t in tasks] == ["mnist-0/1", "mnist-2/3", "mnist-4/5", "mnist-6/7", "mnist-8/9"]
    assert all(t.num_classes == 2 for t in tasks)


def test_fashion_mnist_tasks():
    tasks = scenario_tasks("fashion-mnist")
    assert [(t.dataset, t.classes) for t in tasks] == [("fashion-mnist", tuple(range(10))),
                                                       ("mnist", tuple(range(10)))]


def test_svhn_icifar100_tasks():
    tasks = scenario_tasks("svhn-icifar100")
    assert len(tasks) == 11
    assert (tasks[0].dataset, tasks[0].classes) == ("svhn", tuple(range(10)))
    for i, t in enumerate(tasks[1:]):
        assert t.dataset == "cifar100" and t.classes == tuple(range(10 * i, 10 * i + 10)), t
        assert t.num_classes == 10
    # the ten CIFAR tasks partition the 100 classes
    assert sorted(c for t in tasks[1:] for c in t.classes) == list(range(100))
    assert len({t.name for t in tasks}) == 11


def test_mnist_fashion_pairs_tasks():
    tasks = scenario_tasks("mnist-fashion-pairs")
    assert len(tasks) == 6
    assert (tasks[0].dataset, tasks[0].classes) == ("mnist", tuple(range(10)))
    assert [(t.dataset, t.classes) for t in tasks[1:]] == [("fashion-mnist", (a, a + 1)) for a in range(0, 10, 2)]
    assert len({t.name for t in tasks}) == 6


def test_unknown_scenario():
    with pytest.raises(HrnError, match="unknown scenario 'nope'"):
        scenario_tasks("nope")


def test_scenario_lists_are_fresh():
    a = scenario_tasks("pairwise-mnist")
    a.pop()
    assert len(scenario_tasks("pairwise-mnist")) == 5


# ---------------------------------------------------------------- load_tasks

@pytest.fixture(scope="module")
def mnist():
    return {split: load_dataset("mnist", split) for split in ("train", "test")}


def _rows(x: np.ndarray) -> set:
    return {r.tobytes() for r in x}


def test_load_tasks_remaps_labels_full(mnist):
    specs = [TaskSpec("m-3/7", "mnist", (7, 3))]           # class order defines the local labels
    (task,) = load_tasks(specs)
    for split in ("train", "test"):
        x, y = getattr(task, f"{split}_x"), getattr(task, f"{split}_y")
        X, Y = mnist[split]
        assert x.dtype == np.uint8 and y.dtype == np.int64 and x.shape[1:] == (1, 28, 28)
        assert set(np.unique(y)) == {0, 1}
        assert np.array_equal(x[y == 0], X[Y == 7])        # label 0 <- class 7, original order kept
        assert np.array_equal(x[y == 1], X[Y == 3])
        assert len(x) == int(((Y == 7) | (Y == 3)).sum())


@pytest.mark.parametrize("limit", [1, 37, 200])
def test_load_tasks_limit_caps_and_remaps(mnist, limit):
    tasks = load_tasks(scenario_tasks("pairwise-mnist"), limit=limit, seed=5)
    assert len(tasks) == 5
    for t in tasks:
        for split in ("train", "test"):
            x, y = getattr(t, f"{split}_x"), getattr(t, f"{split}_y")
            assert len(x) == len(y) == limit
            assert set(np.unique(y)) <= {0, 1}
            X, Y = mnist[split]
            for local, cls in enumerate(t.spec.classes):
                assert _rows(x[y == local]) <= _rows(X[Y == cls]), (t.name, split, cls)
    if limit >= 37:                                          # a random subset holds both classes
        assert all(set(np.unique(t.train_y)) == {0, 1} for t in tasks)


def test_load_tasks_limit_is_seeded(mnist):
    specs = scenario_tasks("pairwise-mnist")[:2]
    a = load_tasks(specs, limit=40, seed=1)
    b = load_tasks(specs, limit=40, seed=1)
    c = load_tasks(specs, limit=40, seed=2)
    for ta, tb in zip(a, b):
        assert np.array_equal(ta.train_x, tb.train_x) and np.array_equal(ta.test_y, tb.test_y)
    assert not np.array_equal(a[0].train_x, c[0].train_x)


def test_load_tasks_limit_above_size_keeps_all(mnist):
    (full,) = load_tasks([TaskSpec("m-0/1", "mnist", (0, 1))])
    (capped,) = load_tasks([TaskSpec("m-0/1", "mnist", (0, 1))], limit=10**7)
    assert np.array_equal(full.train_x, capped.train_x) and np.array_equal(full.test_y, capped.test_y)


def test_fashion_then_mnist_data():
    fashion, digits = load_tasks(scenario_tasks("fashion-mnist"), limit=30, seed=0)
    fx, fy = load_dataset("fashion-mnist", "test")
    mx, _ = load_dataset("mnist", "test")
    assert _rows(fashion.test_x) <= _rows(fx) and not _rows(fashion.test_x) & _rows(mx)
    assert _rows(digits.test_x) <= _rows(mx)
    # ten classes in their own order: local labels equal the original ones
    lookup = {r.tobytes(): int(l) for r, l in zip(fx, fy)}
    assert [lookup[r.tobytes()] for r in fashion.test_x] == fashion.test_y.tolist()


def test_cifar_tasks_remap_to_0_9(monkeypatch):
    """Synthetic CIFAR-100 whose pixels encode the class: task i keeps classes 10i..10i+9 as 0..9."""
    y = np.repeat(np.arange(100), 3)
    x = np.broadcast_to(y.astype(np.uint8)[:, None, None, None], (len(y), 3, 32, 32)).copy()
    calls = []

    def fake(name, split, data_dir=None):
        calls.append((name, split))
        assert name == "cifar100"
        return x, y

    monkeypatch.setattr(scen, "load_dataset", fake)
    tasks = load_tasks(scenario_tasks("svhn-icifar100")[1:])
    assert len(calls) == 2                                 # each split read once for all ten tasks
    for i, t in enumerate(tasks):
        assert t.train_y.tolist() == list(np.repeat(np.arange(10), 3))
        assert t.train_x[:, 0, 0, 0].tolist() == list(np.repeat(np.arange(10 * i, 10 * i + 10), 3))


def test_svhn_without_data_dir_is_a_user_error(tmp_path):
    with pytest.raises(HrnError) as info:
        load_tasks(scenario_tasks("svhn-icifar100")[:1], data_dir=str(tmp_path))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- bundled configs

def test_every_scenario_has_a_config_and_vice_versa():
    for name in SCENARIOS:
        assert builtin_config_path(name).is_file()
        assert load_config(builtin_config_path(name)).scenario == name
    for path in CONFIG_DIR.glob("*.yaml"):          # variants (e.g. *-basislock) name a known scenario
        assert load_config(path).scenario in SCENARIOS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_bundled_config_builds_and_runs(scenario):
    cfg = load_config(builtin_config_path(scenario))
    assert cfg.scenario == scenario
    tasks = scenario_tasks(scenario)
    shapes = {dataset_shape(t.dataset)[:3] for t in tasks}
    assert len(shapes) == 1
    shape = shapes.pop()
    model = HRN(cfg, seed=0)
    assert model.num_units == sum(g.count for g in cfg.units)
    assert model.unit_groups == cfg.unit_group_sequence()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    for t, spec in enumerate(tasks[:3]):
        model.add_units(cfg.extra_units_before(t))
        model.add_head(spec.num_classes)
        x = torch.randint(0, 256, (12, *shape), dtype=torch.uint8, generator=g)
        x[::3] = 0                                          # zero images too
        model.train()
        logits, routing = model(x, t)
        assert logits.shape == (12, spec.num_classes) and torch.isfinite(logits).all()
        logits.sum().backward()
        model.eval()
        with torch.no_grad():
            logits, routing = model(x, t)
        assert torch.isfinite(logits).all() and routing.routes.shape == (12, cfg.hrn.depth)
    assert len(set(model.hash_seeds.tolist())) == model.num_units + 1
    # every unit runs on the input, and on every other unit's output (routes chain units freely)
    model.eval()
    with torch.no_grad():
        x = torch.rand(2, *shape)
        for chain in itertools.permutations(range(model.num_units), min(2, cfg.hrn.depth - 1)):
            y = x
            for u in chain:
                y = model.units[u](y)
                assert y.dim() == 4 and y.shape[0] == 2 and min(y.shape[1:]) >= 1, chain
                assert model.units[u].output_shape(tuple(x.shape[1:]))[0] == model.units[u].out_channels


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_config_dict_round_trip(scenario, tmp_path):
    cfg = load_config(builtin_config_path(scenario))
    d = config_to_dict(cfg)
    assert config_from_dict(d) == cfg
    assert config_to_dict(config_from_dict(copy.deepcopy(d))) == d
    # the dict is plain YAML: dump and reload gives the same config
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(d))
    assert load_config(path) == cfg
    # the dict holds only plain types (checkpoint-safe)
    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool))
    assert plain(d)


def test_config_round_trip_with_non_defaults():
    d = config_to_dict(load_config(builtin_config_path("pairwise-mnist")))
    d["hrn"].update(hash_size=17, depth=2, grad_scaling=False, aging_rate=2.5)
    d["training"].update(epochs=[3, 1, 2], optimizer="sgd", lr=0.5, batch_size=3)
    d["head"].update(hidden=[8], activation="relu", dropout=0.0)
    d["extra_units"] = [0, 1, 3]
    d["units"].append({"count": 1, "in_channels": 2,
                       "layers": [{"type": "conv", "out_channels": 3, "kernel": 3},
                                  {"type": "maxpool", "kernel": 2}, {"type": "dropout", "p": 0.1}]})
    cfg = config_from_dict(d)
    assert config_to_dict(cfg) == d
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert cfg.training.epochs_for(0) == 3 and cfg.training.epochs_for(9) == 2
    assert cfg.extra_units_before(0) == 0 and cfg.extra_units_before(1) == 1 and cfg.extra_units_before(7) == 3
    assert cfg.unit_group_sequence() == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("kinds", [["relu"], ["conv", "conv"], ["conv", "maxpool", "relu"], ["batchnorm", "conv"],
                                   ["dropout", "conv"], ["conv", "relu", "leaky_relu"], ["conv", "relu", "batchnorm"]])
def test_unit_layers_outside_what_the_flow_implements_are_refused(kinds):
    """A unit the golden model, HLS and RTL cannot implement is refused at validation (before
    training), in one line naming the rule."""
    layers = [{"type": k, **({"out_channels": 2, "kernel": 3} if k == "conv" else {})} for k in kinds]
    data = {"name": "n", "scenario": "pairwise-mnist", "units": [{"count": 1, "in_channels": 1, "layers": layers}]}
    with pytest.raises(ConfigError, match=r"^config: units\[0\].layers: a unit's layers must be conv, then") as info:
        config_from_dict(data)
    assert "\n" not in str(info.value)


def test_config_defaults_fill_missing_sections():
    cfg = config_from_dict({"name": "n", "scenario": "pairwise-mnist",
                            "units": [{"count": 1, "in_channels": 1, "layers": [{"type": "conv", "out_channels": 2, "kernel": 3}]}]})
    assert cfg.hrn.hash_size == 300 and cfg.training.batch_size == 16 and cfg.head.dropout == 0.2
    assert isinstance(cfg, Config) and dataclasses.is_dataclass(cfg)
    assert cfg.hrn.tau_depth == 1e-5 and isinstance(cfg.hrn.tau_depth, float)


# ---------------------------------------------------------------- config errors

def _base() -> dict:
    return yaml.safe_load(builtin_config_path("pairwise-mnist").read_text())


def _set(path: str, value):
    def edit(d):
        *keys, last = path.split(".")
        for k in keys:
            d = d[int(k)] if k.isdigit() else d[k]
        if value is _DELETE:
            del d[int(last) if last.isdigit() else last]
        else:
            d[int(last) if last.isdigit() else last] = value
    return edit


_DELETE = object()

def bad(what: str, edit, needle: str):
    return pytest.param(edit, needle, id=what.replace(" ", "-"))


def _layer(i: int, **spec):
    return _set(f"units.0.layers.{i}", spec)


BAD_CONFIGS = [
    bad("unknown top-level key", _set("colour", "red"), "colour"),
    bad("unknown hrn key", _set("hrn.warp", 1), "warp"),
    bad("unknown training key", _set("training.momentum", 0.9), "momentum"),
    bad("unknown head key", _set("head.width", 3), "width"),
    bad("non-string key", _set("hrn.7", 1), "7"),
    bad("hash_size string", _set("hrn.hash_size", "big"), "hash_size"),
    bad("hash_size float", _set("hrn.hash_size", 300.5), "hash_size"),
    bad("grad_scaling int", _set("hrn.grad_scaling", 1), "grad_scaling"),
    bad("batch_size bool", _set("training.batch_size", True), "batch_size"),
    bad("lr string", _set("training.lr", "fast"), "lr"),
    bad("dropout bool", _set("head.dropout", True), "dropout"),
    bad("hrn not a mapping", _set("hrn", [1, 2]), "mapping"),
    bad("hash_size zero", _set("hrn.hash_size", 0), "hash_size"),
    bad("basis_size above hash_size", _set("hrn.basis_size", 301), "basis_size"),
    bad("aging_rate below 1", _set("hrn.aging_rate", 0.5), "aging_rate"),
    bad("tau_depth nan", _set("hrn.tau_depth", float("nan")), "tau_depth"),
    bad("aging_rate inf", _set("hrn.aging_rate", float("inf")), "aging_rate"),
    bad("negative tau_depth", _set("hrn.tau_depth", -1e-5), "tau_depth"),
    bad("negative tau_empty", _set("hrn.tau_empty", -0.2), "tau_empty"),
    bad("negative tau_expand", _set("hrn.tau_expand", -0.01), "tau_expand"),
    bad("negative residue_l1", _set("hrn.residue_l1", -1.0), "residue_l1"),
    bad("negative lr", _set("training.lr", -1e-3), "lr"),
    bad("zero lr", _set("training.lr", 0), "lr"),
    bad("negative epochs", _set("training.epochs", [2, -1]), "epochs"),
    bad("float epochs", _set("training.epochs", [1.5]), "epochs"),
    bad("bool epochs", _set("training.epochs", [True]), "epochs"),
    bad("empty epochs", _set("training.epochs", []), "epochs"),
    bad("null epochs", _set("training.epochs", None), "epochs"),
    bad("optimizer", _set("training.optimizer", "rmsprop"), "rmsprop"),
    bad("optimizer not a string", _set("training.optimizer", 3), "optimizer"),
    bad("activation", _set("head.activation", "tanh"), "tanh"),
    bad("negative extra units", _set("extra_units", [0, -2]), "extra_units"),
    bad("bool extra units", _set("extra_units", [0, True]), "extra_units"),
    bad("empty extra units", _set("extra_units", []), "extra_units"),
    bad("missing units", _set("units", _DELETE), "units"),
    bad("empty units", _set("units", []), "unit group"),
    bad("null units", _set("units", None), "unit group"),
    bad("units a mapping", _set("units", {"count": 1}), "units"),
    bad("missing name", _set("name", _DELETE), "name"),
    bad("missing scenario", _set("scenario", _DELETE), "scenario"),
    bad("name not a string", _set("name", ["a"]), "name"),
    bad("scenario null", _set("scenario", None), "scenario"),
    bad("unit group not a mapping", _set("units.0", [2, 1]), "unit group"),
    bad("unit group unknown key", _set("units.0.stride", 2), "stride"),
    bad("unit without layers", _set("units.0.layers", _DELETE), "layers"),
    bad("unit count zero", _set("units.0.count", 0), "count"),
    bad("unit count string", _set("units.0.count", "2"), "count"),
    bad("unit count bool", _set("units.0.count", True), "count"),
    bad("in_channels bool", _set("units.0.in_channels", True), "in_channels"),
    bad("unsupported layer type", _set("units.0.layers.0.type", "transformer"), "transformer"),
    bad("layer type not a string", _set("units.0.layers.0.type", ["conv"]), "type"),
    bad("layer without type", _set("units.0.layers.1", {"momentum": 0.1}), "type"),
    bad("empty layer list", _set("units.0.layers", []), "layer"),
    bad("in_channels zero", _set("units.0.in_channels", 0), "in_channels"),
    bad("conv without kernel", _set("units.0.layers.0.kernel", _DELETE), "kernel"),
    bad("conv without out_channels", _set("units.0.layers.0.out_channels", _DELETE), "out_channels"),
    bad("conv negative stride", _set("units.0.layers.0.stride", -1), "stride"),
    bad("conv stride zero", _set("units.0.layers.0.stride", 0), "stride"),
    bad("conv negative padding", _set("units.0.layers.0.padding", -1), "padding"),
    bad("conv out_channels zero", _set("units.0.layers.0.out_channels", 0), "out_channels"),
    bad("conv kernel bool", _set("units.0.layers.0.kernel", True), "kernel"),
    bad("conv bias string", _set("units.0.layers.0.bias", "yes"), "bias"),
    bad("conv dilation", _set("units.0.layers.0.dilation", 2), "dilation"),
    bad("relu with slope", _layer(2, type="relu", slope=0.1), "slope"),
    bad("batchnorm momentum string", _layer(1, type="batchnorm", momentum="fast"), "momentum"),
    bad("batchnorm eps", _layer(1, type="batchnorm", eps=1e-3), "eps"),
    bad("maxpool kernel zero", _layer(2, type="maxpool", kernel=0), "kernel"),
    bad("maxpool stride float", _layer(2, type="maxpool", stride=1.5), "stride"),
    bad("dropout p 1", _set("units.0.layers.2", {"type": "dropout", "p": 1.0}), "dropout"),
    bad("dropout p string", _layer(2, type="dropout", p="half"), "p"),
    bad("layer not a mapping", _set("units.0.layers", ["conv"]), "layer"),
    bad("layers not a list", _set("units.0.layers", 5), "layers"),
    bad("units not a list", _set("units", 5), "units"),
    bad("conv kernel zero", _set("units.0.layers.0.kernel", 0), "kernel"),
    bad("slope string", _set("units.0.layers.2.slope", "x"), "slope"),
    bad("slope bool", _set("units.0.layers.2.slope", True), "slope"),
    bad("negative slope", _set("units.0.layers.2.slope", -0.5), "slope"),
    bad("head hidden string", _set("head.hidden", ["wide"]), "hidden"),
    bad("head hidden zero", _set("head.hidden", [60, 0]), "hidden"),
    bad("head hidden bool", _set("head.hidden", [True]), "hidden"),
    bad("head hidden float", _set("head.hidden", [60.0]), "hidden"),
    bad("head dropout above 1", _set("head.dropout", 1.5), "dropout"),
    bad("head dropout 1", _set("head.dropout", 1), "dropout"),
    bad("head dropout negative", _set("head.dropout", -0.1), "dropout"),
]


def _build_and_step(d: dict) -> None:
    """Everything `hrn-hw train` does with a config before real data: validate, build, one step."""
    cfg = config_from_dict(d)
    model = HRN(cfg, seed=0)
    model.add_head(2)
    model.train()
    model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 0)


@pytest.mark.parametrize("edit, needle", BAD_CONFIGS)
def test_bad_config_raises_config_error(edit, needle, tmp_path):
    d = _base()
    edit(d)
    # config_from_dict / load_config themselves refuse it (before any unit is built); building
    # and stepping a model from it is refused the same way (one line, exit 2 in the CLI)
    with pytest.raises(ConfigError) as info:
        config_from_dict(copy.deepcopy(d))
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and msg.startswith("config: "), msg
    assert len(msg) < 400
    with pytest.raises(ConfigError):
        _build_and_step(copy.deepcopy(d))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and str(info.value).count(str(path)) == 1


def test_layer_errors_name_their_place():
    d = _base()
    d["units"][1]["layers"][0]["dilation"] = 2
    with pytest.raises(ConfigError) as info:
        config_from_dict(d)
    msg = str(info.value)
    assert msg.startswith("config: units[1].layers[0]: ") and "dilation" in msg
    # the allowed parameters of that layer type are listed
    assert "allowed: type, out_channels, kernel, stride, padding, bias" in msg
    d = _base()
    d["units"][0]["layers"][2]["type"] = "gelu"
    with pytest.raises(ConfigError, match=r"units\[0\]\.layers\[2\]: unsupported unit layer type 'gelu'; "
                                          "supported: conv, batchnorm, leaky_relu, relu, maxpool, dropout"):
        config_from_dict(d)


def test_one_list_of_layer_types():
    """Config validation and the unit builder accept exactly the same layer types and params."""
    from hrn_hw.reference.units import LAYER_PARAMS, LAYER_TYPES, REQUIRED, build_layer, validate_layer_spec

    assert LAYER_TYPES == tuple(LAYER_PARAMS)
    for kind, params in LAYER_PARAMS.items():
        spec = {"type": kind, **{k: 1 for k, v in params.items() if v is REQUIRED}}
        validate_layer_spec(spec)
        layer, ch = build_layer(spec, 3)
        assert isinstance(layer, torch.nn.Module) and ch >= 1
        d = _base()
        conv = {"type": "conv", "out_channels": 2, "kernel": 3}
        d["units"][0]["layers"] = [conv] + ([spec] if kind != "conv" else [])
        config_from_dict(d)                       # every supported type passes config validation
    with pytest.raises(ConfigError, match="unsupported unit layer type 'pool'"):
        build_layer({"type": "pool"}, 1)
    with pytest.raises(ConfigError, match="maxpool layer does not take padding"):
        build_layer({"type": "maxpool", "padding": 1}, 1)


def test_layer_defaults_unchanged():
    """Validation fills the documented defaults; the built layers use them."""
    from hrn_hw.reference.units import build_layer

    conv, out = build_layer({"type": "conv", "out_channels": 4, "kernel": 3}, 2)
    assert out == 4 and (conv.kernel, conv.stride, conv.padding) == (3, 1, 0) and conv.bias is not None
    assert tuple(conv.weight.shape) == (4, 2, 3, 3)
    conv, _ = build_layer({"type": "conv", "out_channels": 4, "kernel": 3, "bias": False}, 2)
    assert conv.bias is None
    assert build_layer({"type": "leaky_relu"}, 1)[0].slope == 0.01
    assert build_layer({"type": "relu"}, 1)[0].slope == 0.0
    pool = build_layer({"type": "maxpool", "kernel": 3}, 1)[0]
    assert (pool.kernel, pool.stride) == (3, 3)
    assert build_layer({"type": "batchnorm"}, 5)[0].momentum == 0.1
    assert build_layer({"type": "dropout"}, 1)[0].p == 0.0


@pytest.mark.parametrize("in_channels, layers, needle", [
    (1, [{"type": "conv", "out_channels": 2, "kernel": 0}], "kernel"),       # was a ZeroDivisionError
    (1, [{"type": "leaky_relu", "slope": "x"}], "slope"),                    # was a ValueError
    (1, ["conv"], "mapping"),                                                # was a ValueError
    (True, [{"type": "relu"}], "in_channels"),
    (1, "relu", "layers"),
    (1, [], "layer"),
])
def test_conv_unit_refuses_bad_specs(in_channels, layers, needle):
    from hrn_hw.reference.units import ConvUnit

    with pytest.raises(ConfigError) as info:
        ConvUnit(in_channels, layers)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_base_config_is_valid():
    _build_and_step(_base())


@pytest.mark.parametrize("text", ["", "[1, 2]\n", "name: [unclosed\n", "just a string\n"])
def test_bad_yaml_file(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
