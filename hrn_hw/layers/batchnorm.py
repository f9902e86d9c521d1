"""`batchnorm`: BatchNorm2d in the reference; export folds it into the conv right before it
(`hrn_hw.layers.conv`), so it has no IR layer, golden operation, HLS or RTL of its own."""

from __future__ import annotations

from hrn_hw.errors import ConfigError
from hrn_hw.layers.registry import LayerKind, number_param, register


@register
class BatchNorm(LayerKind):
    name = "batchnorm"
    params = {"momentum": 0.1}
    unit_stage = 1               # right after the conv it folds into

    def check(self, spec, where):
        return {"momentum": number_param(spec, "momentum", 0.1, 0.0, 1.0, False, where)}

    def module(self, p, channels):
        from hrn_hw.layers.modules import BatchNormLayer
        return BatchNormLayer(channels, p["momentum"]), channels

    def plain_module(self, p, channels):
        import torch.nn as nn
        return nn.BatchNorm2d(channels, momentum=p["momentum"]), channels

    def fold(self, mods, j, folded, unit):
        raise ConfigError(f"unit {unit}: export folds batchnorm into the conv before it; a batchnorm "
                          "that does not follow a conv is not supported")
