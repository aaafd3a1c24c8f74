"""The flags that the commands reading datasets and models share, declared once (torch-free).

Each is a :class:`mmad_edge.runtime.flags.Flag`; the options dataclasses put them on their
fields and the CLI reuses them for the parameters no dataclass holds.
"""

from __future__ import annotations

from mmad_edge.runtime.flags import Flag

DATA = Flag("--data", "Dataset root (see --layout).")
LAYOUT = Flag("--layout", "Dataset layout: mvtec, aebad, realiad or folder.")
VARIANT = Flag("--variant", "Model size: a, f, p, n, t or s{}.")
IMAGE_SIZE = Flag("--image-size", "Square input size in pixels, a multiple of 32{}.")
DEVICE = Flag("--device", "PyTorch device: cpu or cuda.")
EPOCHS = Flag("--epochs", "Training epochs{}.")
LOSS = Flag("--loss", "adc (feature-rich data) or global (feature-poor data){}.")
OUT = Flag("--out", "Where the command writes.")
JSON = Flag("--json", "Write {} as JSON.")
