"""Pooling with learned parameters: ``mixed``, ``gated``, ``tree`` and ``lip``.

- ``mixed``, ``gated``, ``tree``: Lee, Gallagher & Tu, "Generalizing Pooling Functions in
  Convolutional Neural Networks: Mixed, Gated, and Tree", AISTATS 2016. Section "Mixed
  max-average pooling" (f_mix = a max + (1 - a) avg with a learned a in [0, 1]), "Gated
  max-average pooling" (a = sigmoid(w^T x) computed from the window by a learned gating mask
  w), and "Tree pooling" (learned linear pooling filters at the leaves of a binary tree,
  merged by gated internal nodes). The paper counts 1, 9 and 27 extra parameters per layer
  for mixed, gated and 2-level tree pooling with 3x3 windows: one a, one mask, and two leaf
  filters plus one gating mask, shared by all channels; ``per_channel`` gives each channel
  its own (the paper's finer "region/channel" variants).
- ``lip``: Gao, Wang & Wu, "LIP: Local Importance-based Pooling", ICCV 2019 (Eq. 3):
  y = sum_window exp(G(x)) x / sum_window exp(G(x)) with a learned logit module G.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.core.checks import check_bool, check_int, check_number
from poolbench.pooling.base import LocalPool
from poolbench.pooling.ops import (
    block_max,
    block_view,
    compute_dtype,
    crop_to_blocks,
    depthwise_conv2d,
    float32_at_least,
    per_block,
    tiles_into_blocks,
    window_view,
)
from poolbench.pooling.registry import register_pool


def _window_dot(x: Tensor, weight: Tensor, F: int, S: int) -> Tensor:
    """sum_{a,b} weight[c, k, a, b] x[n, c, iS + a, jS + b] -> (N, C, K, H', W'), in float32
    at least (the gates' sigmoids and the tree's mixing are computed from it).

    ``weight`` is (K, F, F) shared by all channels or (C, K, F, F) per channel; one depthwise
    convolution computes every channel's K responses.
    """
    channels = x.shape[1]
    if weight.dim() == 3:
        weight = weight.unsqueeze(0).expand(channels, -1, -1, -1)
    k = weight.shape[1]
    kernel = weight.reshape(channels * k, 1, F, F)
    out = depthwise_conv2d(x, kernel, S, keep_float32=True)
    return out.unflatten(1, (channels, k))


def mixed_pool2d(x: Tensor, mix: Tensor, F: int = 2, S: int = 2) -> Tensor:
    """Mixed max-average pooling: y = a max_window(x) + (1 - a) avg_window(x).

    x (Tensor[N, C, H, W]); ``mix`` is a in [0, 1], a scalar or (C,) per channel.
    """
    avg = F_.avg_pool2d(x, F, S)
    mix = mix.view(-1, 1, 1) if mix.dim() else mix
    return torch.lerp(avg, F_.max_pool2d(x, F, S), mix.to(avg.dtype))


def gated_pool2d(x: Tensor, gate_mask: Tensor, F: int = 2, S: int = 2) -> Tensor:
    """Gated max-average pooling: y = s max(x) + (1 - s) avg(x), s = sigmoid(w^T x_window).

    x (Tensor[N, C, H, W]); ``gate_mask`` w is (F, F) shared or (C, F, F) per channel.
    """
    if F == S:
        h_out, w_out = x.shape[-2] // F, x.shape[-1] // F
        return _DisjointGated.apply(x[..., : h_out * F, : w_out * F], gate_mask)
    gate = torch.sigmoid(_window_dot(x, gate_mask.unsqueeze(-3), F, S).squeeze(2))
    avg = F_.avg_pool2d(x, F, S)
    return torch.lerp(avg, F_.max_pool2d(x, F, S), gate.to(avg.dtype))


class _DisjointGated(torch.autograd.Function):
    """Gated pooling over disjoint windows (F == S, H and W multiples of F), forward and
    backward by hand, in float32 (or float64).

    The windows are laid out as (C, F*F, N*H'*W') once, so the gate logit and the mean are one
    matrix product per channel with [w; 1/F^2] and the max F*F - 1 passes over planes (a
    depthwise convolution for the logit would cost more than the rest of the layer).
    Backward, with s the gate, y = avg + s (max - avg), g the output gradient and
    d = g s (1 - s)(max - avg): dy/dx_k = (1 - s)/F^2 + s [k = argmax] + d w_k, dL/dw_k = sum d x_k.
    """

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        n, c, height, width = x.shape
        F = mask.shape[-1]
        h_out, w_out = height // F, width // F
        with torch.autocast(x.device.type, enabled=False):
            # (C, F*F, N*H'*W'): one contiguous plane per window position.
            windows = (
                x.reshape(n, c, h_out, F, w_out, F)
                .permute(1, 3, 5, 0, 2, 4)
                .to(compute_dtype(x.dtype))
                .contiguous()
                .view(c, F * F, n * h_out * w_out)
            )
            weights = mask.to(windows.dtype).reshape(-1, 1, F * F)  # (1 or C, 1, F*F)
            mix = torch.cat([weights, torch.full_like(weights, 1.0 / (F * F))], dim=1)
            logit, avg = torch.matmul(mix, windows).unbind(1)  # (C, N*H'*W') each
            top = windows[:, 0].clone()
            # Flat offset of the first maximal position in its window, like max pooling.
            first = torch.zeros_like(top)
            for k in range(1, F * F):
                later = windows[:, k] > top
                top = torch.maximum(top, windows[:, k])
                first.masked_fill_(later, (k // F) * width + k % F)
            gate = torch.sigmoid(logit)
            out = torch.lerp(avg, top, gate)
        ctx.save_for_backward(windows, mask, gate, first, top - avg)
        ctx.shape = (n, c, height, width, F, h_out, w_out)
        return out.view(c, n, h_out, w_out).transpose(0, 1).contiguous().to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        windows, mask, gate, first, spread = ctx.saved_tensors
        n, c, height, width, F, h_out, w_out = ctx.shape
        # Gradients in the output's (N, C, H', W') layout; the saved planes are (C, N, H', W').
        g = grad.to(windows.dtype).contiguous()
        gate, spread = gate.view(c, n, h_out, w_out), spread.view(c, n, h_out, w_out)
        gate, spread = gate.transpose(0, 1), spread.transpose(0, 1)
        d = g * gate * (1 - gate) * spread  # dL/dlogit
        grad_x = grad_mask = None
        if ctx.needs_input_grad[0]:
            # Written straight in the input's layout: every x_k gets (1 - s) g / F^2 + d w_k.
            base = (g * (1 - gate)).div_(F * F)
            grad_x = torch.addcmul(
                base.view(n, c, h_out, 1, w_out, 1),
                d.view(n, c, h_out, 1, w_out, 1),
                mask.to(windows.dtype).reshape(1, -1, 1, F, 1, F),
            ).view(n, c, height, width)
            # ... and the max term s g goes to the window's first maximum.
            rows = torch.arange(h_out, device=g.device).view(h_out, 1) * (F * width)
            corner = rows + torch.arange(w_out, device=g.device) * F
            flat = first.view(c, n, h_out, w_out).transpose(0, 1).long().add_(corner)
            grad_x.view(n, c, -1).scatter_add_(
                2, flat.reshape(n, c, -1), (g * gate).reshape(n, c, -1)
            )
            grad_x = grad_x.to(grad.dtype)
        d = d.transpose(0, 1).reshape(c, n * h_out * w_out)
        if ctx.needs_input_grad[1]:
            per_window = torch.matmul(windows, d.unsqueeze(2)).squeeze(2)  # (C, F*F)
            total = per_window if mask.dim() == 3 else per_window.sum(0)
            grad_mask = total.view(mask.shape).to(mask.dtype)
        return grad_x, grad_mask


def tree_pool2d(x: Tensor, leaves: Tensor, gates: Tensor, F: int = 2, S: int = 2) -> Tensor:
    """Tree pooling with learned leaf filters and gated internal nodes.

    x (Tensor[N, C, H, W]); ``leaves`` (L, F, F) and ``gates`` (L - 1, F, F), L = 2^(levels-1)
    (or with a leading C dimension per channel). Node values, children before parents:
    leaf m gives f_m = v_m^T x; internal node n with children l, r gives
    f_n = s_n f_l + (1 - s_n) f_r, s_n = sigmoid(w_n^T x); the root is the output. The gates
    are stored in heap order (gate 0 is the root, gate n has children 2n+1 and 2n+2). The
    filters and gates are computed in float32 at least; the result has ``x``'s dtype.
    """
    filters = torch.cat([gates, leaves], dim=-3)
    # Response k is node k's gate logit (k < L - 1) or leaf value (k >= L - 1).
    values = list(_window_dot(x, filters, F, S).unbind(2))  # 2L - 1 of (N, C, H', W')
    for node in range(gates.shape[-3] - 1, -1, -1):  # children are finished before parents
        gate = torch.sigmoid(values[node])
        values[node] = torch.lerp(values[2 * node + 2], values[2 * node + 1], gate)
    return values[0].to(x.dtype)


class _LearnedPool(LocalPool):
    def __init__(self, channels: int, F: int, S: int, per_channel: bool) -> None:
        super().__init__(F, S)
        layer = type(self).__name__
        self.channels = check_int("channels", channels, 1, where=layer)
        self.per_channel = check_bool("per_channel", per_channel, where=layer)

    def _shape(self, *dims: int) -> tuple[int, ...]:
        return (self.channels, *dims) if self.per_channel else dims

    def extra_repr(self) -> str:
        return super().extra_repr() + f", per_channel={self.per_channel}"


@register_pool("mixed", kind="local", paper="Lee, Gallagher & Tu 2016 (AISTATS)", learnable=True)
class MixedPool(_LearnedPool):
    """a max + (1 - a) avg with a learned a in (0, 1), one per layer or per channel.

    a = sigmoid(mix_logit) keeps the paper's constraint a in [0, 1]; it starts at
    ``mix`` (default 0.5, an even mix).
    """

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, per_channel: bool = False, mix: float = 0.5
    ) -> None:
        super().__init__(channels, F, S, per_channel)
        mix = check_number("mix", mix, 0, 1, low_open=True, high_open=True, where="MixedPool")
        start = torch.logit(torch.tensor(mix))
        self.mix_logit = nn.Parameter(start.expand(self._shape()).clone())

    def forward(self, x: Tensor) -> Tensor:
        return mixed_pool2d(x, torch.sigmoid(self.mix_logit), self.F, self.S)  # (N, C, H', W')


@register_pool("gated", kind="local", paper="Lee, Gallagher & Tu 2016 (AISTATS)", learnable=True)
class GatedPool(_LearnedPool):
    """sigmoid(w^T window) max + (1 - sigmoid(w^T window)) avg, w a learned F x F mask.

    The mask starts at zero, an even mix, and learns which window contents favour max.
    """

    def __init__(self, channels: int, F: int = 2, S: int = 2, per_channel: bool = False) -> None:
        super().__init__(channels, F, S, per_channel)
        self.gate_mask = nn.Parameter(torch.zeros(self._shape(F, F)))

    def forward(self, x: Tensor) -> Tensor:
        return gated_pool2d(x, self.gate_mask, self.F, self.S)  # (N, C, H', W')


@register_pool("tree", kind="local", paper="Lee, Gallagher & Tu 2016 (AISTATS)", learnable=True)
class TreePool(_LearnedPool):
    """Binary tree of depth ``levels``: learned F x F leaf filters merged by learned gates.

    levels=2 is the paper's 2-level tree (two leaves, one gating mask). Leaves start near the
    F x F average filter (plus small noise so they can differ), gates at zero.
    """

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, per_channel: bool = False, levels: int = 2
    ) -> None:
        super().__init__(channels, F, S, per_channel)
        self.levels = check_int("levels", levels, 1, where="TreePool")
        n_leaves = 2 ** (self.levels - 1)
        leaves = torch.full(self._shape(n_leaves, F, F), 1.0 / (F * F))
        self.leaves = nn.Parameter(leaves + 0.1 / (F * F) * torch.randn_like(leaves))
        self.gates = nn.Parameter(torch.zeros(self._shape(n_leaves - 1, F, F)))

    def forward(self, x: Tensor) -> Tensor:
        return tree_pool2d(x, self.leaves, self.gates, self.F, self.S)  # (N, C, H', W')

    def extra_repr(self) -> str:
        return super().extra_repr() + f", levels={self.levels}"


# LIP bounds its logits to [0, LIP_LOGIT_SCALE] (a scaled sigmoid, as in the paper's logit
# modules); lip_pool2d itself is safe for any logits.
LIP_LOGIT_SCALE = 12.0


def lip_pool2d(x: Tensor, logit: Tensor, F: int = 2, S: int = 2) -> Tensor:
    """Local importance pooling: y = avg(x exp(logit)) / avg(exp(logit)) per window.

    x, logit (Tensor[N, C, H, W]) -> Tensor[N, C, H', W'] (Gao et al. 2019, Eq. 3), i.e. each
    window's softmax(logit)-weighted mean of x. The weights are computed in float32 and
    shifted by each window's largest logit before ``exp`` (the shift cancels in the ratio), so
    every window's largest weight is 1 and logits of any spread give no overflow and no
    0 / 0: a window view per block for F == S, the strided window view otherwise.
    """
    with torch.autocast(x.device.type, enabled=False):
        xf, lf = float32_at_least(x), float32_at_least(logit)
        if tiles_into_blocks(*x.shape[-2:], F, S):
            xf, lf = crop_to_blocks(xf, F), crop_to_blocks(lf, F)
            shift = block_max(lf.detach(), F)  # (N, C, H', W')
            weight = (block_view(lf, F) - per_block(shift)).exp().reshape(lf.shape)
            out = F_.avg_pool2d(xf * weight, F, F) / F_.avg_pool2d(weight, F, F)
        else:
            windows = window_view(lf, F, S, 0, False, 0.0)  # (N, C, H', W', F, F)
            shift = windows.detach().amax(dim=(-2, -1), keepdim=True)
            weight = (windows - shift).exp()
            values = window_view(xf, F, S, 0, False, 0.0)
            out = (values * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1))
    return out.to(x.dtype)


class LipLogit(nn.Module):
    """Bottleneck logit module G: conv1x1 C->r, 3x3 r->r, 1x1 r->C, r = max(C // 4, 1).

    Each conv is followed by BatchNorm (ReLU between them); the output is mapped to
    [0, 12] by 12 * sigmoid, the bounded "soft gate" of the paper's logit modules. The paper
    uses its bottleneck module in ResNets; BatchNorm (not instance norm) keeps it usable on
    1x1 feature maps and matches the rest of poolbench's models.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = max(channels // reduction, 1)
        self.body = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return LIP_LOGIT_SCALE * torch.sigmoid(self.body(x))  # (N, C, H, W)


@register_pool("lip", kind="local", paper="Gao, Wang & Wu 2019 (ICCV)", learnable=True)
class LipPool(LocalPool):
    """exp(G(x))-weighted window average with a learned bottleneck logit module G.

    The paper pools with F=3, S=2, padding 1 in ResNets; here F and S are the slot's (default
    2, 2, no padding) so LIP is compared with the other pools at the same window.
    """

    def __init__(self, channels: int, F: int = 2, S: int = 2, reduction: int = 4) -> None:
        super().__init__(F, S)
        self.reduction = check_int("reduction", reduction, 1, where="LipPool")
        self.logit = LipLogit(check_int("channels", channels, 1, where="LipPool"), self.reduction)

    def forward(self, x: Tensor) -> Tensor:
        return lip_pool2d(x, self.logit(x), self.F, self.S)  # (N, C, H', W')

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reduction={self.reduction}"
