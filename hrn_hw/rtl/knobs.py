"""Parallelism knobs of the generated RTL (export options; defaults in docs/rtl.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from hrn_hw.errors import HrnError
from hrn_hw.rtl.head import LANES as HEAD_LANES


@dataclass(frozen=True)
class RtlKnobs:
    """conv_lanes: output channels each conv engine computes in parallel (None: all of the
    unit's out channels; larger values are capped per unit). head_lanes: MAC lanes of the head
    engine. hash_lanes: map elements hashed per cycle (1 is the only value built so far)."""
    conv_lanes: int | None = None
    head_lanes: int = HEAD_LANES
    hash_lanes: int = 1

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "conv_lanes":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HrnError(f"RTL knob {f.name} must be a positive integer, got {value!r}")
        if self.hash_lanes != 1:
            raise HrnError("RTL knob hash_lanes: only 1 is built so far")

    def lanes_of(self, unit) -> int:
        """Conv lanes of one unit (UnitQ): the knob, capped at its out channels."""
        out_channels = unit.layers[0].out_channels
        return out_channels if self.conv_lanes is None else min(self.conv_lanes, out_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RtlKnobs":
        data = dict(data or {})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise HrnError(f"unknown RTL knob(s): {', '.join(sorted(unknown))}")
        return cls(**data)
