"""The bench's results as people read them: the plain-text table, skipped rows and claims, the files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmad_edge.fileio import write_json

from .claims import format_claims
from .tables import ACCURACY_KEY, BASELINE, format_value, markdown, shown_precision, speedups, write_plot


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text results table with the speed-up over the baseline at the same batch."""
    accuracy = any(ACCURACY_KEY in row for row in rows)  # bench --data
    header = ["name", "backend", "precision", "protocol", "batch", "p50 ms", "images/s", "floor ms", "% roofline",
              f"vs {BASELINE}", *(["image AUROC"] if accuracy else [])]
    lines = [header]
    for row, speedup in zip(rows, speedups(list(rows))):
        lines.append([row["name"], row["backend"], shown_precision(row), row["protocol"], str(row["batch"]),
                      format_value(row["p50_ms"], 2), format_value(row["images_per_s"], 1),
                      format_value(row.get("floor_ms"), 2), format_value(row.get("roofline_pct"), 1),
                      "-" if speedup is None else f"{speedup:.2f}x",
                      *([format_value(row.get(ACCURACY_KEY), 4)] if accuracy else [])])
    return aligned(lines)


def aligned(lines: Sequence[Sequence[str]]) -> str:
    """Rows of cells (the header first) as plain text, each column padded to its widest cell."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def summary_text(report: dict[str, Any]) -> str:
    """What `mmad-edge bench` and `bench.record` print on stdout: the table, each skipped row with
    its reason, the claims (a GPU record has none)."""
    lines = [format_table(report["results"])]
    for skipped in report["skipped"]:
        lines.append(f"skipped {_skipped_label(skipped)}: {skipped['reason']}")
    if "speed_claim" in report:
        lines.append(format_claims(report["speed_claim"]))
    return "\n".join(lines)


def _skipped_label(item: dict[str, Any]) -> str:
    """The bench's skipped entry by name, backend, protocol and batch; a GPU record's by its case label."""
    if "case" in item:
        return item["case"]
    return (f"{item['name']} ({item['backend']} {item['protocol']}"
            f"{'' if item['batch'] is None else ' b' + str(item['batch'])})")


def write_outputs(
    report: dict[str, Any], json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None, plot_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the files asked for (JSON, Markdown with the claims if any, PNG plot when rows ran); their paths."""
    written = []
    if json_path is not None:
        written.append(write_json(json_path, report))
    if markdown_path is not None:
        path = Path(markdown_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = markdown(report)
        if "speed_claim" in report:
            text += "\nSpeed claims:\n\n" + "".join(
                f"- {line}\n" for line in format_claims(report["speed_claim"]).splitlines())
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if plot_path is not None and report["results"]:
        written.append(write_plot(plot_path, report))
    return written


def write_text_report(report: dict[str, Any], text: str, json_path: Path | None, markdown_path: Path | None) -> None:
    """A standalone measurement's files: the report as JSON, its Markdown ``text``; the text printed."""
    if json_path is not None:
        write_json(json_path, report)
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(text, encoding="utf-8")
    print(text)
