"""The registry of continual-learning methods: `METHODS` maps each name of
`hrn_hw.cl.strategy.METHOD_NAMES` to its Strategy class; `make_strategy` builds one by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrn_hw.cl.ell import EllStrategy
from hrn_hw.cl.ewc import EwcStrategy
from hrn_hw.cl.hrn import HrnStrategy
from hrn_hw.cl.lwf import LwfStrategy
from hrn_hw.cl.strategy import METHOD_NAMES, Strategy
from hrn_hw.cl.vc import VcStrategy
from hrn_hw.errors import HrnError

if TYPE_CHECKING:
    from hrn_hw.config import Config

METHODS = {"hrn": HrnStrategy, "vc": VcStrategy, "ewc": EwcStrategy, "lwf": LwfStrategy, "ell": EllStrategy}
assert tuple(METHODS) == METHOD_NAMES, "hrn_hw.cl.strategy.METHOD_NAMES and the registry disagree"


def strategy_class(name: str) -> type:
    """The class of method `name`; an unknown name is a one-line HrnError."""
    if name not in METHODS:
        raise HrnError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def make_strategy(name: str, cfg: Config, seed: int = 0) -> Strategy:
    """A strategy of method `name` for `cfg` and `seed` (no model yet)."""
    return strategy_class(name)(cfg, seed)


def as_strategy(learner) -> Strategy:
    """A Strategy as is; a bare HRN model as the HRN strategy around it (hrn_hw.train's helpers
    and the benchmarks pass the model)."""
    return learner if isinstance(learner, Strategy) else HrnStrategy.around(learner)
