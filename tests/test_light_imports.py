"""The runtime must work where torch and onnx are not installed."""

import subprocess
import sys
import textwrap


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
