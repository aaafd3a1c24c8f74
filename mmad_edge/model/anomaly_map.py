"""From encoder/decoder features to the anomaly map and image score (the evaluation protocol).

The reference protocol (MiniMaxAD utils/eval.py): per-scale ``1 - cosine`` maps, bilinear
(align_corners) to S x S, their mean, one 5x5 Gaussian (sigma 4) convolution padded with zeros,
and the mean of the top ``int(H * W * 0.01)`` pixels. Published numbers are computed this way.
The same module runs in evaluation and inside the exported graph, so the deployed score is
the evaluated score and the two cannot drift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmad_edge.config import ModelConfig


def cosine_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - cosine similarity over channels of two (B, C, H, W) tensors -> (B, H, W)."""
    dot = (a * b).sum(1)
    norms = (a * a).sum(1) * (b * b).sum(1)
    return 1.0 - dot / torch.sqrt(torch.clamp(norms, min=eps * eps))


def gaussian_kernel2d(kernel: int, sigma: float) -> torch.Tensor:
    """The reference's 2-D Gaussian, normalised to sum 1 (centre 0.0452, corner 0.0352 at 5/4)."""
    x = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    w = torch.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    return (w / w.sum()).float()


class AnomalyHead(nn.Module):
    """Per-scale 1 - cosine maps -> bilinear (align_corners) to S x S -> mean/sum -> Gaussian
    smoothing (one 2-D convolution, zero padding) -> map; score = mean of the top-k pixels or max."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.combine = config.map_combine
        self.score_mode = config.score_mode
        self.top_percent = config.top_percent
        self.kernel = config.smoothing_kernel
        if self.kernel:
            self.register_buffer(
                "gauss", gaussian_kernel2d(self.kernel, config.smoothing_sigma)[None, None], persistent=False
            )

    def maps(self, enc: list[torch.Tensor], dec: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        total = None
        for e, d in zip(enc, dec):
            m = cosine_distance(e, d).unsqueeze(1)
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=True)
            total = m if total is None else total + m
        if self.combine == "mean":
            total = total / len(enc)
        return total

    def smooth(self, m: torch.Tensor) -> torch.Tensor:
        if not self.kernel:
            return m
        return F.conv2d(m, self.gauss, padding=self.kernel // 2)  # zeros beyond the border, as the reference

    def score(self, m: torch.Tensor) -> torch.Tensor:
        flat = m.flatten(1)
        if self.score_mode == "max":
            return flat.max(dim=1).values
        k = top_k_count(int(m.shape[-2]), int(m.shape[-1]), self.top_percent)
        return flat.topk(k, dim=1).values.mean(dim=1)

    def forward(
        self, enc: list[torch.Tensor], dec: list[torch.Tensor], size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.smooth(self.maps(enc, dec, size))
        return m.squeeze(1), self.score(m)


def top_k_count(height: int, width: int, top_percent: float) -> int:
    """How many pixels the top-percent score averages: the reference's ``int(H * W * ratio)``
    (truncated, pixel count first: 655 at 256 px, 501 at 224), at least 1. Shared with the
    export's TensorRT TopK check."""
    return max(1, int(height * width * (top_percent / 100.0)))
