"""The vanilla CNN (VC) baseline moved into the package: `hrn_hw.cl.vc.VanillaCNN` (the unit
groups' layers chained, flattened, one HRN-style head per task; `VanillaCNN(cfg, num_classes,
in_shape)` builds it with its first head, as this module's did). Kept so that older scripts
and the docs that cite this file still find it."""

from hrn_hw.cl.vc import VanillaCNN

__all__ = ["VanillaCNN"]
