"""Run configuration: the HRN hyperparameters (paper Tables 5, 9, 13), units, heads, training,
and the baselines' settings (`methods:`, paper Tables 2-4 / 6-8 / 10-12; docs/methods.md).

Configs are YAML files; `load_config` validates them into frozen dataclasses, and
`config_to_dict` gives the plain dict stored in checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from hrn_hw import layers as layer_kinds
from hrn_hw.errors import ConfigError
from hrn_hw.profiles import DEFAULT_PROFILE, PROFILE_SWITCHES, PROFILES, STORED_PROFILE, TRAINING_SWITCHES
from hrn_hw.reference.units import validate_layer_spec


@dataclass(frozen=True)
class HRNParams:
    hash_size: int = 300          # s
    basis_size: int = 3           # m
    depth: int = 3                # d: most units one sample visits
    tau_depth: float = 1e-5       # stop when ||r|| < tau_d
    tau_empty: float = 0.2        # Alg. 3
    tau_expand: float = 0.01      # Alg. 4
    aging_start: int = 5          # Alg. 2: initial age threshold T0
    aging_rate: float = 1.2       # Alg. 2: growth factor of T
    residue_l1: float = 1.0       # lambda of Eq. 6
    grad_scaling: bool = True     # Eq. 7
    basis_update: bool = True     # Alg. 2
    basis_lock: bool = False      # not in the paper: freeze a unit's basis after the task that initialised it
    protect_units: bool = False   # not in the paper: a unit keeps its weights after the task that initialised it
    orthogonal_bases: bool = False  # not in the paper: new basis vectors are orthogonal to the locked units' bases
    avoid_task_energy: float = 0.0  # not in the paper: new basis vectors avoid the subspace holding this share of earlier tasks' hash energy (0: off)


@dataclass(frozen=True)
class UnitGroup:
    count: int
    in_channels: int
    layers: tuple


@dataclass(frozen=True)
class HeadParams:
    hidden: tuple = (60, 10)
    activation: str = "leaky_relu"
    dropout: float = 0.2


@dataclass(frozen=True)
class TrainParams:
    epochs: tuple = (5,)          # per task; the last value repeats
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-3

    def epochs_for(self, task: int) -> int:
        return self.epochs[min(task, len(self.epochs) - 1)]


@dataclass(frozen=True)
class EwcParams:
    ewc_lambda: float = 1024.0    # penalty strength lambda
    fisher_samples: int = 200     # training samples of a task its Fisher is estimated on


@dataclass(frozen=True)
class LwfParams:
    alpha: float = 1.0            # weight of the distillation term (Li & Hoiem's lambda_o)
    temperature: float = 2.0      # T of the soft targets


@dataclass(frozen=True)
class EllParams:
    code_size: int = 100          # autoencoder code length (capped below the feature size)
    alpha: float = 1e-3           # weight of the code loss
    distill: float = 1.0          # weight of the distillation term on old heads
    temperature: float = 3.0      # T of the distillation
    ae_epochs: int = 2            # the autoencoder's stabilisation epochs after each task
    ae_task_weight: float = 1e-6  # weight of the head's loss on reconstructed features (AE training)


METHOD_SECTIONS = {"ewc": EwcParams, "lwf": LwfParams, "ell": EllParams}

# The paper's per-scenario settings (Tables 2-4, 6-8, 10-12): the defaults where a config's
# `methods:` section leaves them out. mnist-fashion-pairs is not in the paper: it takes the
# Fashion-MNIST -> MNIST values (the same two data sets).
PAPER_METHODS = {
    "pairwise-mnist": {"ewc": {"ewc_lambda": 1024.0}, "ell": {"code_size": 100}},
    "fashion-mnist": {"ewc": {"ewc_lambda": 400.0}, "ell": {"code_size": 300}},
    "mnist-fashion-pairs": {"ewc": {"ewc_lambda": 400.0}, "ell": {"code_size": 300}},
    "svhn-icifar100": {"ewc": {"ewc_lambda": 250.0}, "ell": {"code_size": 2800}},
}


@dataclass(frozen=True)
class MethodParams:
    """Settings of the continual-learning baselines (the HRN's own are `hrn:`; the VC has none)."""
    ewc: EwcParams = field(default_factory=EwcParams)
    lwf: LwfParams = field(default_factory=LwfParams)
    ell: EllParams = field(default_factory=EllParams)


@dataclass(frozen=True)
class Config:
    name: str
    scenario: str
    hrn: HRNParams
    units: tuple
    head: HeadParams
    training: TrainParams
    extra_units: tuple = field(default=(0,))   # units added before task i (index 0 unused)
    methods: MethodParams = field(default_factory=MethodParams)
    profile: str = STORED_PROFILE

    @property
    def switches(self) -> dict:
        """Every training switch of `hrn:` as this config resolved it (its profile's defaults,
        then the switches the config gave)."""
        return {key: getattr(self.hrn, key) for key in TRAINING_SWITCHES}

    def extra_units_before(self, task: int) -> int:
        if task == 0:
            return 0
        return self.extra_units[min(task, len(self.extra_units) - 1)]

    def unit_group_sequence(self) -> list[int]:
        """Group index of every initial unit, in unit-number order."""
        return [g for g, grp in enumerate(self.units) for _ in range(grp.count)]


def _keys(keys) -> str:
    return ", ".join(sorted(str(k) for k in keys))


def _build(cls, data, where: str, section: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {section}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ConfigError(f"{where}: {section}: unknown key(s) {_keys(unknown)}; allowed: {', '.join(names)}")
    kwargs = {}
    for key, value in data.items():
        default = names[key].default
        field_name = f"{where}: {section}.{key}"
        if isinstance(default, tuple):
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{field_name}: expected true/false, got {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{field_name}: expected a finite number, got {value!r}")
            value = type(default)(value) if isinstance(default, float) else value
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(f"{field_name}: expected an integer, got {value!r}")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"{field_name}: expected a string, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _is_int(v, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _validate(cfg: Config, where: str) -> None:
    h = cfg.hrn
    if h.hash_size < 1 or h.basis_size < 1 or h.depth < 1:
        raise ConfigError(f"{where}: hrn: hash_size, basis_size and depth must be >= 1")
    if h.basis_size > h.hash_size:
        raise ConfigError(f"{where}: hrn: basis_size ({h.basis_size}) cannot exceed hash_size ({h.hash_size})")
    if h.aging_start < 1 or h.aging_rate < 1.0:
        raise ConfigError(f"{where}: hrn: aging_start must be >= 1 and aging_rate >= 1")
    for key in ("tau_depth", "tau_empty", "tau_expand", "residue_l1"):
        if getattr(h, key) < 0:
            raise ConfigError(f"{where}: hrn.{key} must be >= 0, got {getattr(h, key)!r}")
    if not 0 <= h.avoid_task_energy < 1:
        raise ConfigError(f"{where}: hrn.avoid_task_energy must be in [0, 1) (0: off), got {h.avoid_task_energy!r}")
    if not cfg.units:
        raise ConfigError(f"{where}: units: at least one unit group is needed")
    t = cfg.training
    if t.batch_size < 1:
        raise ConfigError(f"{where}: training.batch_size must be >= 1, got {t.batch_size}")
    if not t.epochs or not all(_is_int(e, 0) for e in t.epochs):
        raise ConfigError(f"{where}: training.epochs must be a non-empty list of non-negative integers, "
                          f"got {list(t.epochs)!r}")
    if t.optimizer not in ("adam", "sgd"):
        raise ConfigError(f"{where}: training.optimizer must be adam or sgd, got {t.optimizer!r}")
    if t.lr <= 0:
        raise ConfigError(f"{where}: training.lr must be > 0, got {t.lr!r}")
    hd = cfg.head
    if hd.activation not in ("leaky_relu", "relu"):
        raise ConfigError(f"{where}: head.activation must be leaky_relu or relu, got {hd.activation!r}")
    if not all(_is_int(n, 1) for n in hd.hidden):
        raise ConfigError(f"{where}: head.hidden must be a list of positive integers (layer widths), "
                          f"got {list(hd.hidden)!r}")
    if not 0.0 <= hd.dropout < 1.0:
        raise ConfigError(f"{where}: head.dropout must lie in [0, 1), got {hd.dropout!r}")
    if not cfg.extra_units or not all(_is_int(n, 0) for n in cfg.extra_units):
        raise ConfigError(f"{where}: extra_units must be a non-empty list of non-negative integers, "
                          f"got {list(cfg.extra_units)!r}")
    _validate_methods(cfg.methods, where)


def _validate_methods(m: MethodParams, where: str) -> None:
    checks = [("ewc.ewc_lambda", m.ewc.ewc_lambda >= 0, ">= 0"), ("ewc.fisher_samples", m.ewc.fisher_samples >= 1, ">= 1"),
              ("lwf.alpha", m.lwf.alpha >= 0, ">= 0"), ("lwf.temperature", m.lwf.temperature > 0, "> 0"),
              ("ell.code_size", m.ell.code_size >= 1, ">= 1"), ("ell.alpha", m.ell.alpha >= 0, ">= 0"),
              ("ell.distill", m.ell.distill >= 0, ">= 0"), ("ell.temperature", m.ell.temperature > 0, "> 0"),
              ("ell.ae_epochs", m.ell.ae_epochs >= 1, ">= 1"), ("ell.ae_task_weight", m.ell.ae_task_weight >= 0, ">= 0")]
    for key, ok, rule in checks:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(m, section), name)
            raise ConfigError(f"{where}: methods.{key} must be {rule}, got {value!r}")


def _methods(data, scenario: str, where: str) -> MethodParams:
    """The `methods:` section: per method, the paper's values for the scenario where not given."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: methods: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - set(METHOD_SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: methods: unknown key(s) {_keys(unknown)}; allowed: "
                          f"{', '.join(METHOD_SECTIONS)} (the HRN's settings are under hrn:, the VC has none)")
    paper = PAPER_METHODS.get(scenario, {})
    parts = {}
    for name, cls in METHOD_SECTIONS.items():
        given = data.get(name)
        if given is None or isinstance(given, dict):
            given = {**paper.get(name, {}), **(given or {})}
        parts[name] = _build(cls, given, where, f"methods.{name}")
    return MethodParams(**parts)


UNIT_GROUP_KEYS = ("count", "in_channels", "layers")


def _unit_group(grp, where: str) -> UnitGroup:
    if not isinstance(grp, dict):
        raise ConfigError(f"{where}: a unit group must be a mapping with {', '.join(UNIT_GROUP_KEYS)}, "
                          f"got {type(grp).__name__}")
    unknown = set(grp) - set(UNIT_GROUP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_keys(unknown)}; allowed: {', '.join(UNIT_GROUP_KEYS)}")
    missing = [k for k in UNIT_GROUP_KEYS if k not in grp]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} "
                          f"(a unit group needs {', '.join(UNIT_GROUP_KEYS)})")
    for key in ("count", "in_channels"):
        if not _is_int(grp[key], 1):
            raise ConfigError(f"{where}.{key} must be a positive integer, got {grp[key]!r}")
    layers = grp["layers"]
    if not isinstance(layers, list):
        raise ConfigError(f"{where}.layers must be a list of layer mappings, got {type(layers).__name__}")
    if not layers:
        raise ConfigError(f"{where}.layers: a unit needs at least one layer")
    for j, spec in enumerate(layers):
        validate_layer_spec(spec, f"{where}.layers[{j}]")
    _check_unit_shape([spec["type"] for spec in layers], f"{where}.layers")
    return UnitGroup(grp["count"], grp["in_channels"], tuple(dict(l) for l in layers))


# The layer sequence every layer of the flow implements (golden model, HLS, RTL conv engine),
# from the layer kinds' `unit_stage` / `unit_anywhere` (hrn_hw.layers): one conv first, then in
# this order at most one of each stage; dropout (the identity at inference) anywhere after the conv.
UNIT_STAGES, UNIT_ANYWHERE = layer_kinds.unit_stages()
UNIT_SHAPE = (f"{' or '.join(UNIT_STAGES[0])}, then optionally {', '.join(' or '.join(s) for s in UNIT_STAGES[1:])} "
              f"in that order ({' or '.join(UNIT_ANYWHERE)} anywhere after the {' or '.join(UNIT_STAGES[0])})")


def _check_unit_shape(kinds: list, where: str) -> None:
    """Refuse (one line) a unit whose layers the export, golden model or RTL cannot implement."""
    stage = 0
    for j, kind in enumerate(kinds):
        if kind in UNIT_ANYWHERE and j > 0:
            continue
        later = [k for k, names in enumerate(UNIT_STAGES) if kind in names and k >= stage and (k > 0 or j == 0)]
        if not later or (j == 0) != (kind in UNIT_STAGES[0]):
            raise ConfigError(f"{where}: a unit's layers must be {UNIT_SHAPE}; got {', '.join(kinds)}")
        stage = later[0] + 1


def _profile(data: dict, default: str, where: str) -> str:
    profile = data.get("profile", default)
    if profile not in PROFILES:
        raise ConfigError(f"{where}: profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return profile


def _hrn_section(data: dict, profile: str) -> dict | None:
    """The `hrn:` mapping with the profile's switch defaults under the switches it gives."""
    given = data.get("hrn")
    if given is None:
        given = {}
    return {**PROFILE_SWITCHES[profile], **given} if isinstance(given, dict) else given


def config_from_dict(data: dict, where: str = "config", default_profile: str = STORED_PROFILE) -> Config:
    """Validate a plain dict (from YAML or a checkpoint) into a Config.

    `default_profile` is the profile of a dict without `profile:` (a stored config from before
    profiles is `paper`; `load_config` passes DEFAULT_PROFILE for config files). Every problem
    raises ConfigError with a one-line message starting with `where`.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
    known = ("name", "scenario", "profile", "hrn", "units", "head", "training", "extra_units", "methods")
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_keys(unknown)}; allowed: {', '.join(known)}")
    for key in ("name", "scenario", "units"):
        if key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")
    for key in ("name", "scenario"):
        if not isinstance(data[key], str) or not data[key]:
            raise ConfigError(f"{where}: {key} must be a non-empty string, got {data[key]!r}")
    groups = data["units"] if data["units"] is not None else []
    if not isinstance(groups, list):
        raise ConfigError(f"{where}: units must be a list of unit groups, got {type(groups).__name__}")
    units = [_unit_group(grp, f"{where}: units[{i}]") for i, grp in enumerate(groups)]
    extra = data.get("extra_units", [0])
    profile = _profile(data, default_profile, where)
    cfg = Config(
        name=data["name"],
        scenario=data["scenario"],
        profile=profile,
        hrn=_build(HRNParams, _hrn_section(data, profile), where, "hrn"),
        units=tuple(units),
        head=_build(HeadParams, data.get("head"), where, "head"),
        training=_build(TrainParams, data.get("training"), where, "training"),
        extra_units=tuple(extra) if isinstance(extra, (list, tuple)) else (extra,),
        methods=_methods(data.get("methods"), data["scenario"], where),
    )
    _validate(cfg, where)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """Plain (YAML/checkpoint-safe) dict of a Config."""
    out = dataclasses.asdict(cfg)
    out["units"] = [{"count": g.count, "in_channels": g.in_channels, "layers": [dict(l) for l in g.layers]}
                    for g in cfg.units]
    for key in ("training", "head"):
        out[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in out[key].items()}
    out["extra_units"] = list(cfg.extra_units)
    return out


def builtin_config_path(scenario: str) -> Path:
    """Path of the bundled paper config of a scenario."""
    return Path(str(resources.files("hrn_hw") / "configs" / f"{scenario}.yaml"))


def read_config_file(path: str | Path):
    """The plain YAML data of a config file (not validated; `config_from_dict` does that)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None


def load_config(path: str | Path, profile: str | None = None) -> Config:
    """Read and validate a YAML config file; `profile` (hrn-hw train --profile) replaces the
    file's `profile:` (the switches the file gives still override the profile's)."""
    data = read_config_file(path)
    if profile is not None and isinstance(data, dict):
        data = {**data, "profile": profile}
    return config_from_dict(data, str(path), default_profile=DEFAULT_PROFILE)
