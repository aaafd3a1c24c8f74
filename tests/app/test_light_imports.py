"""The runtime must work where torch and onnx are not installed."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path


def test_package_and_runtime_import_without_torch_or_onnx(tmp_path):
    for name in ("torch", "onnx"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    code = textwrap.dedent(
        """
        import sys
        import mmad_edge, mmad_edge.config, mmad_edge.runtime
        from mmad_edge.runtime import imageio, preprocess, scoring
        assert 'torch' not in sys.modules and 'onnx' not in sys.modules
        print('ok', mmad_edge.__version__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_the_cli_starts_without_torch_onnx_or_opencv():
    """Every command's --help and argument errors come before any heavy library is loaded."""
    code = "import sys, mmad_edge.cli; print(sorted({'torch', 'onnx', 'cv2', 'onnxruntime'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


ROOT = Path(__file__).resolve().parents[2]
# Each room and the rooms of the package it must not import (imports point one way). The
# application room (mmad_edge/app) and the CLI sit on top of every room; only the CLI imports app.
TOP = {"mmad_edge.app", "mmad_edge.cli"}
FORBIDDEN = {
    "runtime": {"mmad_edge"},
    "mmad_edge": {"mmad_edge.export", "mmad_edge.calib", "mmad_edge.bench", *TOP},
    "calib": {"mmad_edge.export", "mmad_edge.bench", *TOP},
    "export": {"mmad_edge.bench", *TOP},
    "bench": TOP,
}
PACKAGE_OF_ROOM = {"mmad_edge": "mmad_edge", "runtime": "mmad_edge.runtime", "calib": "mmad_edge.calib",
                   "export": "mmad_edge.export", "bench": "mmad_edge.bench"}
ALLOWED = {"runtime": {"mmad_edge.runtime"}, "mmad_edge": {"mmad_edge.runtime"}, "calib": set(), "export": set(),
           "bench": set()}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved against ``package``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def violations() -> list[str]:
    found = []
    for room, banned in FORBIDDEN.items():
        for path in sorted((ROOT / room).rglob("*.py")):
            if room == "mmad_edge" and (path.name == "cli.py" or "app" in path.relative_to(ROOT / room).parts):
                continue  # the CLI and the applications are the face over every room
            package = ".".join([PACKAGE_OF_ROOM[room], *path.relative_to(ROOT / room).parent.parts])
            for name in imported_modules(path, package):
                if any(name == b or name.startswith(b + ".") for b in banned) and not any(
                        name == a or name.startswith(a + ".") for a in ALLOWED[room]):
                    found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_rooms_import_only_earlier_rooms():
    assert violations() == []


def test_the_import_walk_sees_a_backward_import(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("from ..export import pipeline\nimport mmad_edge.bench.suite\n")
    assert imported_modules(module, "mmad_edge.calib") >= {"mmad_edge.export.pipeline", "mmad_edge.bench.suite"}
