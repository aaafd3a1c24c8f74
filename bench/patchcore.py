"""PatchCore (Roth et al., CVPR 2022) at inference, random weights and memory bank, for timing.

Features: WideResNet-50-2 layers 2 and 3, each averaged over 3x3 neighbourhoods, layer 3
bilinearly upsampled to layer 2's grid (stride 8), concatenated (1536 channels) and projected
to ``embed_dim`` by adaptive average pooling over channels (the authors' default is 1024).
Each patch is scored by its distance to the nearest memory-bank entry; the map is that distance
upsampled to the image and smoothed (sigma 4), the score the largest patch distance.

The default bank is what a 10 % coreset of ~200 training images keeps at 28 x 28 patches per
image (~16 k entries). Search uses faiss (exact L2) when that optional package is installed,
else ``torch.cdist`` in chunks of ``chunk`` queries to bound memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .maps import GaussianBlur, upsample
from .wideresnet import WideResNet50

DEFAULT_BANK_SIZE = 16384
DEFAULT_EMBED_DIM = 1024


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401  (optional dependency)
    except ImportError:
        return False
    return True


class PatchCore(nn.Module):
    """Image (B, 3, S, S) normalised -> (map (B, S, S), score (B,))."""

    def __init__(
        self,
        image_size: int,
        bank_size: int = DEFAULT_BANK_SIZE,
        embed_dim: int = DEFAULT_EMBED_DIM,
        chunk: int = 4096,
        use_faiss: bool | None = None,
    ) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"PatchCore needs an image size divisible by 16 (layer-3 stride), got {image_size}")
        if bank_size < 1 or embed_dim < 1 or chunk < 1:
            raise ValueError(f"bank_size, embed_dim and chunk must be >= 1, got {bank_size}, {embed_dim}, {chunk}")
        self.image_size = image_size
        self.embed_dim = embed_dim
        self.chunk = chunk
        self.use_faiss = faiss_available() if use_faiss is None else use_faiss
        if self.use_faiss and not faiss_available():
            raise ValueError("use_faiss=True but faiss is not installed; pip install faiss-cpu or leave use_faiss unset")
        self._index = None
        self.backbone = WideResNet50(depth=3)
        self.register_buffer("bank", torch.randn(bank_size, embed_dim))
        self.blur = GaussianBlur(sigma=4.0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, h, w, embed_dim) patch features at stride 8."""
        _, layer2, layer3 = self.backbone(x)
        layer2 = F.avg_pool2d(layer2, 3, 1, 1)
        layer3 = F.interpolate(F.avg_pool2d(layer3, 3, 1, 1), size=layer2.shape[-2:], mode="bilinear")
        patches = torch.cat([layer2, layer3], dim=1).permute(0, 2, 3, 1)
        b, h, w, c = patches.shape
        return F.adaptive_avg_pool1d(patches.reshape(-1, 1, c), self.embed_dim).reshape(b, h, w, self.embed_dim)

    def nearest_distance(self, queries: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) Euclidean distance of each query to its nearest bank entry."""
        if self.use_faiss:
            return self._faiss_distance(queries)
        bank = self.bank.to(queries.dtype)
        parts = [torch.cdist(part, bank).amin(dim=1) for part in queries.split(self.chunk)]
        return torch.cat(parts)

    def _faiss_distance(self, queries: torch.Tensor) -> torch.Tensor:
        if self._index is None:  # built once, as a deployed PatchCore would
            import faiss

            self._index = faiss.IndexFlatL2(self.embed_dim)
            self._index.add(self.bank.float().cpu().numpy())
        squared, _ = self._index.search(queries.float().cpu().numpy(), 1)
        return torch.from_numpy(squared[:, 0]).clamp_min(0).sqrt().to(queries.device, queries.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patches = self.embed(x)
        b, h, w, d = patches.shape
        distances = self.nearest_distance(patches.reshape(-1, d)).reshape(b, 1, h, w)
        smoothed = self.blur(upsample(distances, self.image_size))[:, 0]
        return smoothed, distances.amax(dim=(1, 2, 3))
