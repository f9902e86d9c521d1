"""Cycle model of the RTL blocks: the one place that lists every block's latency formula.

Each function gives a block's latency in clock cycles, counted from the cycle of its first
input handshake to the cycle of its last output handshake, both included, with the input
stream never idle and the output never stalled. The sim/ testbenches measure exactly that and
require equality (docs/rtl.md lists the measured values). Stalls on either stream add one
cycle each; the blocks never lose or reorder data under them. Each formula lives beside its
block's hardware.
"""

from __future__ import annotations

from hrn_hw.rtl.conv_engine import conv_engine_cycles, conv_engine_phases
from hrn_hw.rtl.hash_unit import hash_unit_cycles, hash_unit_phases
from hrn_hw.rtl.head import head_cycles
from hrn_hw.rtl.normaliser import normaliser_cycles, normaliser_phases
from hrn_hw.rtl.projection import projection_cycles, projection_phases
from hrn_hw.rtl.residue import embedding_cycles, residue_cycles, residue_phases

__all__ = ["hash_unit_phases", "hash_unit_cycles", "normaliser_phases", "normaliser_cycles",
           "projection_phases", "projection_cycles", "conv_engine_phases", "conv_engine_cycles",
           "residue_phases", "residue_cycles", "embedding_cycles", "head_cycles"]
