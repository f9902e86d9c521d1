"""`dropout`: the identity at inference, so export omits it (no IR layer)."""

from __future__ import annotations

from hrn_hw.layers.registry import LayerKind, number_param, register


@register
class Dropout(LayerKind):
    name = "dropout"
    params = {"p": 0.0}
    unit_anywhere = True         # the identity at inference

    def check(self, spec, where):
        return {"p": number_param(spec, "p", 0.0, 0.0, 1.0, True, where)}

    def module(self, p, channels):
        from hrn_hw.layers.modules import DropoutLayer
        return DropoutLayer(p["p"]), channels

    def plain_module(self, p, channels):
        import torch.nn as nn
        return nn.Dropout(p["p"]), channels

    def fold(self, mods, j, folded, unit):
        return 1                 # the identity at inference: nothing to export
