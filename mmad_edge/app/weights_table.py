"""`mmad-edge weights`: the official UniRepLKNet ImageNet weights as an aligned table."""

from __future__ import annotations

from pathlib import Path

import typer

from mmad_edge.app.json_output import write_json

COLUMNS = ("name", "variant", "file", "pretraining", "cached")


def table_lines(rows: list[dict]) -> list[str]:
    """One line per row under a header, columns padded to their widest cell (the last unpadded)."""
    table = [COLUMNS] + [tuple((r[c] or "no") if c == "cached" else r[c] for c in COLUMNS) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]) for row in table]


def show_weights(json_path: Path | None) -> None:
    """Print the table and where the files come from; ``--json`` gets the rows."""
    from mmad_edge.weights import REPO_ID, listing, local_dir

    rows = listing()
    for line in table_lines(rows):
        typer.echo(line)
    typer.echo(f"downloaded from the Hugging Face repo {REPO_ID} on first use; offline, put the file in {local_dir()}/")
    write_json(json_path, {"weights": rows})
