"""MiniMaxAD network: UniRepLKNet encoder, multi-scale bottleneck, mirrored decoder."""
