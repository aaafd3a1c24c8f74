"""mmad-edge: train MiniMaxAD and deploy it to TensorRT and ONNX Runtime.

Importing the package must stay light: the runtime runs on devices without torch,
so nothing here imports torch or onnx.
"""

__version__ = "0.1.0"
