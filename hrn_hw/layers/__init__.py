"""Unit layer kinds: one definition per kind, one table every layer of hrn-hw asks.

A kind (`conv`, `batchnorm`, `leaky_relu`, `relu`, `maxpool`, `dropout`, ...) is one module of
this package: a `LayerKind` subclass registered under its config `type`, in the style of
hls4ml's layer and template registration. It defines, for that kind, the config parameters
and their validation, the reference PyTorch module, the export (BatchNorm fold, calibration,
quantisation into the IR layer), the IR layer's manifest entry and arrays, the shape and
format rules, the golden (integer numpy) operation, the HLS emitter (a function of
hls/templates/hrn_unit.h or hls4ml), whether and where the RTL conv engine runs it, its
cycle count there, and its operation count in the dataflow's many-core model.

Every dispatch site asks `get(name)` (or `of(layer)` for an IR layer or a reference module):
the config validation and unit builder (hrn_hw.reference.units), export (quantize, ir,
shapes, report), the golden model, the HLS renderer, the RTL conv engine and the dataflow
simulator. A kind that is not registered raises `LayerKindError` (or the site's ConfigError /
ExportError) everywhere; nothing falls back to another kind.

Adding a kind: a module here with its `LayerKind` (and its reference module in
`hrn_hw.layers.modules`, its C++ in hls/templates/hrn_unit.h when it has one), imported below.
"""

from hrn_hw.layers.registry import (REQUIRED, LayerKind, LayerKindError, get, kinds, of, register, unit_stages,
                                    validate_spec, window_out_hw)
from hrn_hw.layers import conv, batchnorm, activation, maxpool, dropout, avgpool  # noqa: E402  (registration order)

__all__ = ["REQUIRED", "LayerKind", "LayerKindError", "get", "kinds", "of", "register", "unit_stages", "validate_spec",
           "window_out_hw",
           # the built-in kinds' modules
           "conv", "batchnorm", "activation", "maxpool", "dropout", "avgpool"]
