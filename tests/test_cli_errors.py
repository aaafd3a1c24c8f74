"""One line, never a traceback: `eval` given an export, `bench` given a .onnx that is not ONNX."""

from __future__ import annotations

from typer.testing import CliRunner

from mmad_edge.cli import app


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_eval_given_an_export_says_what_it_takes(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.fp32.onnx").write_bytes(b"graph")
    for target in (export, export / "model.fp32.onnx"):
        line = one_line_error(["eval", str(target), "--data", str(tmp_path)])
        assert "training checkpoint" in line and f"mmad-edge run {target}" in line
    assert (export / "model.fp32.onnx").read_bytes() == b"graph"


def test_bench_given_a_file_that_is_not_onnx(tmp_path):
    fake = tmp_path / "model.fp32.onnx"
    fake.write_text("not a graph")
    line = one_line_error(["bench", str(fake), "--no-peers", "--quiet"])
    assert line == (f"error: {fake}: not an ONNX model (it does not parse); pass a model.<precision>.onnx "
                    "written by mmad-edge export")
