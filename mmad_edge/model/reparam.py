"""Structural reparameterisation: the training-form network -> an equivalent inference form.

- every BatchNorm folded into the conv before it;
- each Dilated Reparam Block's branches merged into one large depthwise kernel;
- layer scale, the GRN beta (as W @ beta) and the BN after the second linear folded into that
  linear; GRN keeps only its data-dependent gamma term, and disappears where gamma is all zero;
- the FFN linears become 1x1 convolutions on NCHW, so the graph has no NHWC permutes.

Optionally (``fold_input``) the BGR->RGB swap and the 1/(255 std) scaling move into the stem
conv's weights, leaving only a per-channel mean subtraction before it. Zero padding is
preserved because only the (zero-preserving) scaling is folded, never the mean.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mmad_edge.config import IMAGENET_MEAN, IMAGENET_STD
from mmad_edge.model.layers import DilatedReparamBlock, SEBlock, UniRepLKNetBlock
from mmad_edge.model.minimaxad import MiniMaxAD


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """BN in eval mode as y = x * scale + shift, per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv (with bias) equal to bn(conv(x)) in eval mode."""
    scale, shift = bn_scale_shift(bn)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
    ).to(conv.weight)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.weight.data = conv.weight.detach() * scale.detach().view(-1, 1, 1, 1)
    fused.bias.data = (bias * scale + shift).detach()
    return fused


def dilate_kernel(weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """A dilated k x k kernel as the equivalent dense (r(k-1)+1)-sized kernel (zeros between taps)."""
    if dilation == 1:
        return weight
    k = weight.shape[-1]
    span = dilation * (k - 1) + 1
    dense = weight.new_zeros(*weight.shape[:2], span, span)
    dense[:, :, ::dilation, ::dilation] = weight
    return dense


def merge_dilated(block: DilatedReparamBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of the single large depthwise conv equal to the block's branch sum."""
    scale, shift = bn_scale_shift(block.origin_bn)
    kernel = block.lk_origin.weight * scale.view(-1, 1, 1, 1)
    bias = shift
    size = block.kernel
    for k, r in block.branches:
        s, b = bn_scale_shift(getattr(block, f"dil_bn_k{k}_{r}"))
        w = dilate_kernel(getattr(block, f"dil_conv_k{k}_{r}").weight * s.view(-1, 1, 1, 1), r)
        pad = (size - w.shape[-1]) // 2
        kernel = kernel + F.pad(w, (pad, pad, pad, pad))
        bias = bias + b
    return kernel.detach(), bias.detach()


class FusedBlock(nn.Module):
    """Inference form of a UniRepLKNet block, all NCHW:
    x + pw2(GRN_gamma(GELU(pw1(SE(dw(x)))))) with BN, layer scale and GRN beta folded."""

    def __init__(self, channels: int, kernel: int, hidden: int, grn: bool) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=True)
        self.se = SEBlock(channels, channels // 4)
        self.pw1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.pw2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.grn_gamma = nn.Parameter(torch.zeros(1, hidden, 1, 1)) if grn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.pw1(self.se(self.dw(x))))
        if self.grn_gamma is not None:
            g = torch.linalg.vector_norm(y, ord=2, dim=(2, 3), keepdim=True)  # one ReduceL2 pass in ONNX
            n = g / (g.mean(dim=1, keepdim=True) + 1e-6)
            y = (self.grn_gamma * n + 1.0) * y
        return x + self.pw2(y)


@torch.no_grad()
def fuse_block(block: UniRepLKNetBlock) -> FusedBlock:
    """The inference form of one training-form block."""
    channels = block.gamma.numel()
    if isinstance(block.dwconv, DilatedReparamBlock):
        kernel, bias = merge_dilated(block.dwconv)
    else:
        kernel, bias = block.dwconv.weight.detach(), torch.zeros_like(block.gamma)
    scale, shift = bn_scale_shift(block.norm)
    linear1, grn, linear2, bn2 = block.pwconv1[1], block.act[1], block.pwconv2[0], block.pwconv2[2]
    hidden = linear1.out_features
    gamma = grn.gamma.reshape(-1)
    fused = FusedBlock(channels, kernel.shape[-1], hidden, grn=bool(torch.any(gamma != 0))).to(kernel)
    fused.dw.weight.copy_(kernel * scale.view(-1, 1, 1, 1))
    fused.dw.bias.copy_(bias * scale + shift)
    fused.se.load_state_dict(block.se.state_dict())
    fused.pw1.weight.copy_(linear1.weight[:, :, None, None])
    fused.pw1.bias.copy_(linear1.bias)
    if fused.grn_gamma is not None:
        fused.grn_gamma.copy_(gamma.view(1, -1, 1, 1))
    s2, t2 = bn_scale_shift(bn2)
    out_scale = block.gamma * s2
    fused.pw2.weight.copy_((linear2.weight * out_scale[:, None])[:, :, None, None])
    fused.pw2.bias.copy_(block.gamma * (s2 * (linear2.weight @ grn.beta.reshape(-1)) + t2))
    return fused


class FoldedInput(nn.Module):
    """uint8 BGR NHWC -> float NCHW minus 255 * mean (BGR order); the stem conv does the rest."""

    def __init__(self) -> None:
        super().__init__()
        mean_bgr = torch.tensor(IMAGENET_MEAN[::-1]) * 255.0
        self.register_buffer("mean", mean_bgr.view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.permute(0, 3, 1, 2).to(self.mean.dtype) - self.mean


@torch.no_grad()
def fold_input_normalization(model: MiniMaxAD) -> None:
    """Move BGR->RGB and 1/(255 std) into the stem conv, in place (inference copies only)."""
    stem = model.encoder.downsample_layers[0][0]
    inv = 1.0 / (torch.tensor(IMAGENET_STD, dtype=stem.weight.dtype) * 255.0)
    rgb_weight = stem.weight * inv.view(1, 3, 1, 1)
    stem.weight.copy_(rgb_weight.flip(1))
    model.preprocess = FoldedInput().to(stem.weight)


@torch.no_grad()
def reparameterize(model: MiniMaxAD, fold_input: bool = False) -> MiniMaxAD:
    """A new, equivalent network in inference form; ``model`` is left untouched.

    With ``fold_input`` the returned network's ``forward`` still takes uint8 BGR NHWC frames,
    but ``features`` then expects mean-subtracted BGR input (see ``FoldedInput``).
    """
    deployed = copy.deepcopy(model).eval()
    for parent in list(deployed.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, UniRepLKNetBlock):
                setattr(parent, name, fuse_block(child))
    neck = deployed.bottleneck
    for i in (1, 2, 3):
        setattr(neck, f"conv{i}", fold_conv_bn(getattr(neck, f"conv{i}"), getattr(neck, f"bn{i}")))
        setattr(neck, f"bn{i}", nn.Identity())
    if fold_input:
        fold_input_normalization(deployed)
    return deployed.requires_grad_(False)
