"""``--json PATH``: every command's summary as JSON, said on stderr."""

from __future__ import annotations

from pathlib import Path

import typer

from mmad_edge import fileio


def write_json(path: Path | None, obj: dict) -> None:
    """Write ``obj`` at ``path`` (nothing without a path) and say so on stderr."""
    if path is not None:
        typer.echo(f"wrote {fileio.write_json(path, obj)}", err=True)


def report(result: dict, summary: str, path: Path | None) -> None:
    """A command's close: its readable ``summary`` on stdout, ``result`` as JSON at ``path``."""
    typer.echo(summary)
    write_json(path, result)
