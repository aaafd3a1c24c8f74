"""mmad-edge: train MiniMaxAD and deploy it to TensorRT and ONNX Runtime.

Importing the package must stay light: the runtime runs on devices without torch,
so nothing here imports torch or onnx.
"""

import os

__version__ = "0.1.0"

# MKL's conditional numerical reproducibility, on before torch makes its first MKL call: with it off
# (MKL's default) an Intel Xeon's GEMMs may take other code branches from one call to the next, and a
# resumed training run then differs from an uninterrupted one (seen on AVX-512 VNNI; see
# mmad_edge/threads.py). AUTO keeps the CPU's fastest branch. Only torch links MKL: the runtime's
# backends are unaffected, and a value the user set wins.
os.environ.setdefault("MKL_CBWR", "AUTO")
