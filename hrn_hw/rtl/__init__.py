"""RTL of the routed dataflow: Amaranth generators of its blocks (docs/rtl.md).

Blocks so far: `HashUnit` (index hash into s buckets), `Normaliser` (exact integer 1/sqrt
normalisation) and `ProjectionComparator` (coefficients, energies, masked argmax). Each is bit-exact with the golden primitives (`hrn_hw.fixedpoint`) and has a
cycle formula in `hrn_hw.rtl.cycles`.
"""

from hrn_hw.rtl.cycles import hash_unit_cycles, normaliser_cycles, projection_cycles
from hrn_hw.rtl.gen import hash_unit_params, normaliser_params, to_verilog, write_verilog
from hrn_hw.rtl.hash_unit import HashUnit
from hrn_hw.rtl.normaliser import Normaliser
from hrn_hw.rtl.projection import ProjectionComparator

__all__ = ["HashUnit", "Normaliser", "ProjectionComparator", "hash_unit_cycles", "normaliser_cycles",
           "projection_cycles", "hash_unit_params", "normaliser_params", "to_verilog", "write_verilog"]
