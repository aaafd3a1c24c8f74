"""Serving the detector on NVIDIA Triton Inference Server (`mmad-edge serve`, `mmad-edge triton-repo`).

Torch-free like the rest of the runtime; PyTriton and tritonclient are imported only where a
server is started (the ``serve`` extra).
"""
