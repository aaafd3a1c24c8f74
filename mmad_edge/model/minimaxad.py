"""The MiniMaxAD network in training form: frozen encoder, trainable bottleneck + decoder."""

from __future__ import annotations

import torch
from torch import nn

from mmad_edge.config import ModelConfig
from mmad_edge.model.anomaly_map import AnomalyHead
from mmad_edge.model.bottleneck import MultiScaleBottleneck
from mmad_edge.model.decoder import MirroredDecoder
from mmad_edge.model.encoder import UniRepLKNetEncoder
from mmad_edge.model.preprocess import Preprocess


class MiniMaxAD(nn.Module):
    """Reverse-distillation autoencoder. ``features(x)`` -> (encoder feats, decoder feats);
    ``forward(frames)`` -> (anomaly_map (B, H, W), score (B,)) from uint8 BGR NHWC frames."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        spec = config.spec
        self.preprocess = Preprocess()
        self.encoder = UniRepLKNetEncoder(spec, config.encoder_padding)
        self.bottleneck = MultiScaleBottleneck(spec, config.bottleneck_depth)
        self.decoder = MirroredDecoder(spec)
        self.head = AnomalyHead(config)
        self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> MiniMaxAD:
        super().train(mode)
        self.encoder.eval()  # frozen: BN statistics must never move
        return self

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Normalised float NCHW input -> ([e1, e2, e3], [d1, d2, d3])."""
        with torch.no_grad():
            enc = self.encoder(x)
        return enc, self.decoder(self.bottleneck(enc))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(frames)
        enc, dec = self.features(x)
        return self.head(enc, dec, (x.shape[2], x.shape[3]))


def build_model(config: ModelConfig) -> MiniMaxAD:
    return MiniMaxAD(config)
