"""The spec of a training sweep (`hrn-hw sweep SPEC.yaml`, docs/sweeps.md): read, check, expand.

    kind: train
    methods: [hrn, ewc]             # continual-learning methods (hrn-hw train's RunOptions.method)
    configs:                        # bundled config names, or YAML files (relative to the spec)
      - pairwise-mnist
      - config: pairwise-mnist
        label: no-grad-scaling      # the cell's name, its folder and its config's name
        overrides: {hrn: {grad_scaling: false}}
      - {config: pairwise-mnist, label: paper, overrides: {profile: paper}, methods: [hrn]}
                                    # methods: only these of the spec's methods run this config
    seeds: 3                        # 0, 1, 2; or a list of seeds
    epochs: 1                       # optional: epochs per task of every run (default: the config's)
    limit: 500                      # optional: cap train and test samples per task
    data_dir: data                  # optional: SVHN / CIFAR-100 files (relative to the current folder)
    out: runs/sweeps/mine           # optional; default runs/sweeps/<spec file name>

Every problem is one HrnError line that starts with the spec's path; every config (overrides
applied) is validated here, before any run starts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


from hrn_hw.cl.strategy import METHOD_NAMES
from hrn_hw.errors import HrnError
from hrn_hw.sweep import read_yaml

METHODS = METHOD_NAMES
KEYS = ("kind", "methods", "configs", "seeds", "epochs", "limit", "data_dir", "out")
ENTRY_KEYS = ("config", "label", "overrides", "methods")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,-]*")
MAX_SEED = 2**32 - 1
SWEEPS_DIR = "sweeps"          # the shipped specs: package data hrn_hw/sweeps/*.yaml


@dataclass(frozen=True)
class Spec:
    """A checked training sweep: its cells are methods x configs, each run over every seed."""
    path: Path
    methods: tuple
    configs: tuple             # (label, config dict with name = label, methods), in the spec's order
    seeds: tuple
    epochs: int | None
    limit: int | None
    data_dir: str | None
    out: Path

    def points(self, out: Path | None = None) -> list[dict]:
        """One picklable dict per run (method slowest, then config, then seed), with its folder
        OUT/<method>/<label>/seed-<seed>; the config dict comes last (error lines cut it short)."""
        out = Path(out or self.out)
        return [{"method": method, "label": label, "seed": seed, "epochs": self.epochs, "limit": self.limit,
                 "data_dir": self.data_dir, "folder": str(out / method / label / f"seed-{seed}"), "config": config}
                for method in self.methods for label, config, methods in self.configs if method in methods
                for seed in self.seeds]


# Config keys a method's training never reads: a run that differs only there is the same run.
UNREAD = {"hrn": ("methods",)}
BASELINE_UNREAD = ("profile", "hrn", "extra_units")


def identity(point: dict) -> dict:
    """What makes two runs the same run (JSON-normalised): a results file is reused only for it.
    The config is compared as resolved (a stored config from before profiles is `paper`, with
    every switch's default), without the keys the method does not read (the HRN's for a
    baseline)."""
    from hrn_hw.config import config_from_dict, config_to_dict

    keys = ("method", "config", "seed", "epochs", "limit")
    run = json.loads(json.dumps({k: point[k] for k in keys}))
    config = config_to_dict(config_from_dict(run["config"], "a sweep run's config"))
    unread = UNREAD.get(run["method"], BASELINE_UNREAD)
    run["config"] = {k: v for k, v in config.items() if k not in unread}
    return json.loads(json.dumps(run))


def same_training(point: dict, results: dict) -> bool:
    """Whether an HRN run's recorded switches are those the point resolves to today: a profile
    whose definition changed since (a switch added) is not the same training. A switch missing
    from the record is its HRNParams default: the code before the switch trained that way."""
    if point["method"] != "hrn":
        return True
    from hrn_hw.config import HRNParams, config_from_dict

    want = config_from_dict(json.loads(json.dumps(point["config"])), "a sweep run's config").switches
    had = {k: results.get("switches", {}).get(k, getattr(HRNParams, k)) for k in want}
    return json.loads(json.dumps(had)) == json.loads(json.dumps(want))


def shipped_specs() -> list[str]:
    """Names of the specs shipped with hrn_hw (hrn_hw/sweeps/*.yaml)."""
    folder = resources.files("hrn_hw") / SWEEPS_DIR
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def spec_path(text: str) -> Path:
    """A spec file: the path given, or a shipped spec's name (methods-pairwise-mnist)."""
    path = Path(text)
    if path.exists() or "/" in text or text.endswith((".yaml", ".yml")):
        return path
    if text in shipped_specs():
        return Path(str(resources.files("hrn_hw") / SWEEPS_DIR / f"{text}.yaml"))
    raise HrnError(f"{text}: no such sweep file, nor a shipped spec ({', '.join(shipped_specs())})")


def read_spec(path: str | Path) -> Spec:
    """The training sweep in `path`, checked (kind: train, known keys, every config valid)."""
    path = Path(path)
    raw = read_yaml(path)
    if raw.get("kind") != "train":
        hint = " (a simulator sweep runs as: hrn-hw sweep EXPORT SWEEP.yaml)" if "axes" in raw else ""
        raise HrnError(f"{path}: kind: train is needed for a training sweep, got {raw.get('kind')!r}{hint}")
    unknown = sorted(map(str, set(raw) - set(KEYS)))
    if unknown:
        raise HrnError(f"{path}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(KEYS)})")
    methods = _methods(path, raw.get("methods"))
    configs = _configs(path, raw.get("configs"), methods)
    return Spec(path=path, methods=methods, configs=configs, seeds=_seeds(path, raw.get("seeds")),
                epochs=_count(path, raw, "epochs"), limit=_count(path, raw, "limit"),
                data_dir=_text(path, raw, "data_dir"),
                out=Path(_text(path, raw, "out") or Path("runs") / "sweeps" / path.stem))


def _methods(path: Path, value) -> tuple:
    if not isinstance(value, list) or not value:
        raise HrnError(f"{path}: methods must be a non-empty list of {', '.join(METHODS)}")
    odd = [m for m in value if m not in METHODS]
    if odd:
        raise HrnError(f"{path}: unknown method(s) {', '.join(map(str, odd))} (known: {', '.join(METHODS)})")
    if len(set(value)) != len(value):
        raise HrnError(f"{path}: methods lists a method twice")
    return tuple(value)


def _seeds(path: Path, value) -> tuple:
    if _is_int(value) and value >= 1:
        return tuple(range(value))
    if (isinstance(value, list) and value and all(_is_int(s) and 0 <= s <= MAX_SEED for s in value)
            and len(set(value)) == len(value)):
        return tuple(value)
    raise HrnError(f"{path}: seeds must be a count >= 1 or a list of distinct seeds in [0, {MAX_SEED}], "
                   f"got {value!r}")


def _count(path: Path, raw: dict, key: str) -> int | None:
    value = raw.get(key)
    if value is not None and not (_is_int(value) and value >= 1):
        raise HrnError(f"{path}: {key} must be a positive integer, got {value!r}")
    return value


def _text(path: Path, raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise HrnError(f"{path}: {key} must be a non-empty string (a path), got {value!r}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _configs(path: Path, value, methods: tuple) -> tuple:
    if not isinstance(value, list) or not value:
        raise HrnError(f"{path}: configs must be a non-empty list of config names, files or "
                       "{config, label, overrides} mappings")
    configs = tuple(_config(path, i, entry, methods) for i, entry in enumerate(value))
    labels = [label for label, _, _ in configs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise HrnError(f"{path}: configs share the label(s) {', '.join(twice)}; give each a distinct label")
    return configs


def _config(path: Path, i: int, entry, methods: tuple) -> tuple[str, dict, tuple]:
    """(label, config dict, methods) of configs[i]: the config file or bundled config, overrides
    applied to the file as written (an overridden profile: gives its own switch defaults),
    validated, renamed to its label; the spec's methods that run it."""
    from hrn_hw.config import DEFAULT_PROFILE, config_from_dict, config_to_dict, read_config_file

    where = f"{path}: configs[{i}]"
    if isinstance(entry, str):
        entry = {"config": entry}
    if not isinstance(entry, dict):
        raise HrnError(f"{where}: expected a config name, a file or a mapping, got {entry!r}")
    unknown = sorted(map(str, set(entry) - set(ENTRY_KEYS)))
    if unknown:
        raise HrnError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(ENTRY_KEYS)})")
    name = entry.get("config")
    if not isinstance(name, str) or not name:
        raise HrnError(f"{where}: config must name a bundled config or a YAML file, got {name!r}")
    overrides = entry.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise HrnError(f"{where}: overrides must be a mapping of config sections, got {overrides!r}")
    if {"name", "scenario"} & set(overrides):
        raise HrnError(f"{where}: overrides cannot change the config's name or scenario")
    label = entry.get("label", _default_label(Path(name).stem, overrides))
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise HrnError(f"{where}: label must be letters, digits and . _ + = , - (a folder name), got {label!r}")
    file = _config_file(path, name)
    data = read_config_file(file)
    if not isinstance(data, dict):
        raise HrnError(f"{file}: expected a mapping at top level, got {type(data).__name__}")
    data = {**_merge(data, overrides), "name": label}
    cfg = config_from_dict(data, f"{where} ({label})", default_profile=DEFAULT_PROFILE)
    return label, config_to_dict(cfg), _entry_methods(where, entry.get("methods"), methods)


def _entry_methods(where: str, value, methods: tuple) -> tuple:
    """The spec's methods an entry runs: all of them, or the entry's `methods:` (a subset)."""
    if value is None:
        return methods
    if not isinstance(value, list) or not value or not set(value) <= set(methods):
        raise HrnError(f"{where}: methods must be a non-empty list of the spec's methods "
                       f"({', '.join(methods)}), got {value!r}")
    return tuple(m for m in methods if m in value)


def _config_file(spec: Path, name: str) -> Path:
    """A bundled config's file (a name such as pairwise-mnist), else a file relative to the spec."""
    from hrn_hw.config import builtin_config_path

    if "/" not in name and not name.endswith((".yaml", ".yml")):
        bundled = builtin_config_path(name)
        if not bundled.is_file():
            names = sorted(p.stem for p in bundled.parent.glob("*.yaml"))
            raise HrnError(f"{spec}: no bundled config {name!r} (bundled: {', '.join(names)}; "
                           "or name a YAML file)")
        return bundled
    return spec.parent / name


def _merge(base, override):
    """`base` with `override` applied: mappings key by key (at every depth), anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: _merge(base.get(key), value) for key, value in override.items()}}
    return override


def _leaves(mapping: dict) -> list[tuple[str, object]]:
    """(innermost key, value) of every non-mapping value, depth first."""
    return [leaf for key, value in mapping.items()
            for leaf in (_leaves(value) if isinstance(value, dict) and value else [(key, value)])]


def _default_label(stem: str, overrides: dict) -> str:
    """The config's name, with its overridden switches appended: pairwise-mnist+grad_scaling=false."""
    text = "+".join([stem] + [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in _leaves(overrides)])
    return re.sub(r"[^A-Za-z0-9._+=,-]", "", text)
