"""Training losses of MiniMaxAD: ADCLoss (feature-rich data) and the global cosine loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmad_edge.model.anomaly_map import cosine_distance


def quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile of all elements (torch.quantile's definition, no size cap)."""
    flat = x.reshape(-1)
    pos = q * (flat.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, flat.numel() - 1)
    low = flat.kthvalue(lo + 1).values
    high = flat.kthvalue(hi + 1).values if hi != lo else low
    return low + (high - low) * (pos - lo)


def global_cosine_loss(enc: list[torch.Tensor], dec: list[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of the batch mean of 1 - cos(flatten(e_i), flatten(d_i))."""
    loss = enc[0].new_zeros(())
    for e, d in zip(enc, dec):
        loss = loss + (1.0 - F.cosine_similarity(e.flatten(1), d.flatten(1), dim=1)).mean()
    return loss


def adc_loss(
    enc: list[torch.Tensor], dec: list[torch.Tensor], image_size: tuple[int, int],
    p_hard: float = 0.9999, p_lim: float = 0.9995,
) -> torch.Tensor:
    """ADCLoss as the reference defines it.

    M = sum over scales of (1 - per-pixel cosine), nearest-upsampled to S x S, over the batch;
    s = std(M) (unbiased, torch's default); d = quantile(M, p_hard) - s^2 and the loss is the mean
    of M^2 over pixels with M^2 >= d. When fewer than num_lim = S*S*B*(1 - p_lim) pixels pass,
    d = quantile(M^2, p_lim) - s^2 instead. The first quantile is on M and the comparison on M^2:
    that is the reference behaviour, kept on purpose.
    """
    m = None
    for e, d in zip(enc, dec):
        dist = cosine_distance(e, d).unsqueeze(1)
        dist = F.interpolate(dist, size=image_size, mode="nearest")
        m = dist if m is None else m + dist
    m = m.squeeze(1)
    m2 = m * m
    with torch.no_grad():
        s = m.std()
        num_lim = m.numel() * (1.0 - p_lim)
        thr = quantile(m, p_hard) - s * s
        keep = m2 >= thr
        if keep.sum() < num_lim:
            keep = m2 >= quantile(m2, p_lim) - s * s
    return m2[keep].mean()
