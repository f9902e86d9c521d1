"""Ops whose parameter gradients are scaled per sample (Eq. 7) while input gradients are not.

Eq. 7 scales, for each sample b, the gradient that reaches a unit's weights by a factor c_b.
Scaling the unit's output gradient would also scale what flows to earlier units, so the
parameterised ops compute their parameter gradients from a per-sample rescaled output
gradient and their input gradient from the unscaled one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd import Function

from hrn_hw.device import host_array
from hrn_hw.reference import native


def _pair(v) -> list[int]:
    return [v, v] if isinstance(v, int) else list(v)


def _per_sample(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return c.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class _ScaledConv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, scale, stride, padding):
        ctx.save_for_backward(x, weight, scale)
        ctx.conf = (stride, padding, bias is not None)
        return conv_forward(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, scale = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]
        # One convolution_backward on the per-sample scaled gradient gives the scaled parameter
        # gradients; the input gradient of sample b is linear in its own grad_out, so dividing
        # by c_b (>= tau_d > 0 whenever a unit runs) recovers the unscaled input gradient.
        c = _per_sample(scale, grad_out)
        divide = need_x and bool((scale != 0).all())
        grad_x, grad_w, grad_b = conv_backward(grad_out * c, x, weight, stride, padding,
                                               [divide, need_w, bool(need_b)])
        if divide:
            grad_x = grad_x / _per_sample(scale, grad_x)
        elif need_x:   # a zero factor: the input gradient needs the unscaled grad_out
            grad_x = conv_backward(grad_out, x, weight, stride, padding, [True, False, False])[0]
        return grad_x, grad_w, grad_b if need_b else None, None, None, None


class _ScaledAffine(Function):
    """y = x * gamma + beta per channel (NCHW), parameter gradients scaled per sample."""

    @staticmethod
    def forward(ctx, x, gamma, beta, scale):
        ctx.save_for_backward(x, gamma, scale)
        return x * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad_out):
        x, gamma, scale = ctx.saved_tensors
        grad_x = grad_out * gamma.view(1, -1, 1, 1) if ctx.needs_input_grad[0] else None
        scaled = grad_out * _per_sample(scale, grad_out)
        grad_g = (scaled * x).sum(dim=(0, 2, 3)) if ctx.needs_input_grad[1] else None
        grad_b = scaled.sum(dim=(0, 2, 3)) if ctx.needs_input_grad[2] else None
        return grad_x, grad_g, grad_b, None


def conv2d(x, weight, bias, stride, padding, scale: torch.Tensor | None):
    """F.conv2d, with parameter gradients of sample b multiplied by scale[b] when given."""
    if scale is None:
        return conv_forward(x, weight, bias, stride, padding)
    return _ScaledConv2d.apply(x, weight, bias, scale.detach(), stride, padding)


def channel_affine(x, gamma, beta, scale: torch.Tensor | None):
    """x * gamma + beta per channel, with per-sample parameter-gradient scaling when given."""
    if scale is None:
        return x * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)
    return _ScaledAffine.apply(x, gamma, beta, scale.detach())


# ---- fused unit block: conv -> batch norm -> per-channel affine -> (leaky) ReLU -----------------
#
# The same arithmetic as conv2d + F.batch_norm + channel_affine + F.leaky_relu above, as one
# autograd node with a hand-written backward (fewer graph nodes and Python calls per unit).
# Small batches use the plain im2col convolution kernel (aten._slow_conv2d_*), which is several
# times faster than oneDNN's for the few-sample, one-input-channel calls that routing makes;
# large batches use the default kernel. Both are deterministic.

SMALL_BATCH = 64


def _im2col_forward_is_faster(x, weight, stride: int, padding: int) -> bool:
    """Cost model fitted on one core (torch 2.13 CPU): oneDNN ~ 100 us + 0.5 us/sample + 1 ns/MAC,
    im2col ~ 0.8 us/sample + 4.5 ns/MAC. Only the kernel changes, never the arithmetic's meaning."""
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    macs = n * ho * wo * kh * kw * cin * cout / 16
    return 0.3 * n + 0.0035 * macs < 100.0


def im2col_forward(x, weight, stride: int, padding: int) -> bool:
    """Whether conv_forward takes the im2col kernel: on the CPU, where that is the faster one."""
    return x.device.type == "cpu" and _im2col_forward_is_faster(x, weight, stride, padding)


def im2col_backward(x) -> bool:
    """Whether conv_backward takes the im2col kernel: small batches on the CPU."""
    return x.shape[0] <= SMALL_BATCH and x.device.type == "cpu"


def conv_forward(x, weight, bias, stride: int, padding: int):
    """F.conv2d; on the im2col kernel where that is the faster one (small convolutions)."""
    if im2col_forward(x, weight, stride, padding):
        k = list(weight.shape[2:])
        return torch.ops.aten._slow_conv2d_forward(x, weight, k, bias, _pair(stride), _pair(padding))
    return F.conv2d(x, weight, bias, stride, padding)


def conv_backward(grad, x, weight, stride: int, padding: int, mask: list[bool]):
    """(grad_input, grad_weight, grad_bias) of conv_forward, the entries of `mask` only."""
    if im2col_backward(x):
        k = list(weight.shape[2:])
        return torch.ops.aten._slow_conv2d_backward(grad, x, weight, k, _pair(stride), _pair(padding), mask)
    return torch.ops.aten.convolution_backward(grad, x, weight, [weight.shape[0]] if mask[2] else None,
                                               _pair(stride), _pair(padding), [1, 1], False, [0, 0], 1, mask)


class _UnitBlock(Function):
    """y = act(bn_affine(bn_norm(conv(x)))) with Eq. 7 per-sample scaling of every parameter
    gradient (conv weight/bias, BN gamma/beta) when `scale` is given; input gradients unscaled."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, scale, running_mean, running_var, conf):
        stride, padding, use_batch, momentum, eps, slope = conf
        y = conv_forward(x, weight, bias, stride, padding)
        xhat, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
            y, None, None, running_mean, running_var, use_batch, momentum, eps)
        z = xhat * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)
        out = F.leaky_relu(z, slope) if slope else F.relu(z)
        # the Eq. 7 factor shaped once per sample [B, 1, 1, 1] (None when off), and whether every
        # factor is non-zero (then the input gradient is recovered by dividing by it)
        c = None if scale is None else _per_sample(scale, y)
        ctx.divide = scale is not None and bool(host_array(scale).all())
        ctx.save_for_backward(x, weight, gamma, c, y, xhat, z, save_mean, save_invstd)
        # running statistics only matter to the backward when they normalised (not in place then)
        ctx.running = (None, None) if use_batch else (running_mean, running_var)
        ctx.conf = conf
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, gamma, c, y, xhat, z, save_mean, save_invstd = ctx.saved_tensors
        rm, rv = ctx.running
        stride, padding, use_batch, momentum, eps, slope = ctx.conf
        need = ctx.needs_input_grad
        gz = (torch.ops.aten.leaky_relu_backward(grad_out, z, slope, False) if slope
              else torch.ops.aten.threshold_backward(grad_out, z, 0))
        scaled = gz if c is None else gz * c
        grad_g = (scaled * xhat).sum(dim=(0, 2, 3)) if need[3] else None
        grad_b = scaled.sum(dim=(0, 2, 3)) if need[4] else None
        need_x, need_w, need_bias = need[0], need[1], ctx.has_bias and need[2]
        if not (need_x or need_w or need_bias):
            return None, None, None, grad_g, grad_b, None, None, None, None
        gxhat = gz * gamma.view(1, -1, 1, 1)
        gy = torch.ops.aten.native_batch_norm_backward(
            gxhat, y, None, rm, rv, save_mean, save_invstd, use_batch, eps, [True, False, False])[0]
        if c is None:
            gx, gw, gb = conv_backward(gy, x, weight, stride, padding, [need_x, need_w, need_bias])
        else:
            # parameter gradients from the per-sample scaled gradient; the input gradient of
            # sample b is linear in its own gradient, so dividing by c_b recovers the unscaled one
            divide = need_x and ctx.divide
            gx, gw, gb = conv_backward(gy * c, x, weight, stride, padding, [divide, need_w, need_bias])
            if divide:
                gx = gx / c
            elif need_x:
                gx = conv_backward(gy, x, weight, stride, padding, [True, False, False])[0]
        return (gx if need_x else None, gw if need_w else None, gb if need_bias else None,
                grad_g, grad_b, None, None, None, None)


def unit_block(x, weight, bias, gamma, beta, running_mean, running_var, stride: int, padding: int,
               use_batch: bool, momentum: float, eps: float, slope: float, scale: torch.Tensor | None):
    """conv -> BN (batch statistics when use_batch, updating the running ones) -> affine -> act."""
    scale = None if scale is None else scale.detach()
    twins = native.nodes()
    if twins is not None:      # the compiled twin of _UnitBlock, given the same kernel choices
        return twins.unit_block(x, weight, bias, gamma, beta, scale, running_mean, running_var, stride,
                                padding, use_batch, momentum, eps, slope,
                                im2col_forward(x, weight, stride, padding), im2col_backward(x))
    conf = (stride, padding, use_batch, momentum, eps, slope)
    return _UnitBlock.apply(x, weight, bias, gamma, beta, scale, running_mean, running_var, conf)


def conv_act_eval(x, weight, bias, stride: int, padding: int, slope: float):
    """unit_block on running statistics for callers that need no gradient (inference), given the
    BN-folded (W', b') of fold_bn: (leaky) ReLU of the convolution, in place."""
    z = conv_forward(x, weight, bias, stride, padding)
    return F.leaky_relu_(z, slope) if slope else F.relu_(z)


def fold_bn(weight, bias, gamma, beta, running_mean, running_var, eps: float):
    """(W', b') of conv followed by BN on running statistics: a = gamma / sqrt(var + eps),
    W' = a W, b' = a (b - mean) + beta."""
    a = gamma * torch.rsqrt(running_var + eps)
    shift = beta - running_mean * a if bias is None else torch.addcmul(beta, bias - running_mean, a)
    return weight * a.view(-1, 1, 1, 1), shift
