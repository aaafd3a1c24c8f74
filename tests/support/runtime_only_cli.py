"""The CLI as a runtime-only install (``pip install ".[ort]"``: no torch, no onnx) runs it, made by
blocking those imports in a fresh interpreter; optionally reports which blocked packages loaded anyway."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKER = textwrap.dedent(
    """
    import atexit, json, os, sys

    class Absent:
        BLOCKED = {"torch", "onnx", "onnxsim", "torchvision", "matplotlib"}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    if os.environ.get("LOADED_REPORT"):  # which blocked packages got loaded after all, written at exit
        atexit.register(lambda: open(os.environ["LOADED_REPORT"], "w").write(
            json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in Absent.BLOCKED))))
    from mmad_edge.cli import main
    sys.argv = ["mmad-edge", *sys.argv[1:]]
    main()
    """
)


def runtime_only(*args: str, loaded_report: Path | None = None,
                 home: Path | None = None) -> subprocess.CompletedProcess:
    """`mmad-edge ARGS` with torch and onnx unimportable; ``loaded_report`` gets the blocked modules loaded."""
    env = {**os.environ, "LOADED_REPORT": str(loaded_report or ""), **({"HOME": str(home)} if home else {})}
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True, timeout=300, env=env)
