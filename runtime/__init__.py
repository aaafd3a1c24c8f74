"""Lean detector runtime: TensorRT or ONNX Runtime, no torch, no onnx.

This package imports nothing else from mmad_edge and must keep running on Python 3.10
(JetPack 6).
"""
