"""`mmad-edge bench`: the timing table (exit 1 when no row ran), or with ``--serve`` a running server
under load next to the in-process Detector on the same artifact."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from mmad_edge.app.exits import fail
from mmad_edge.bench.options import BenchOptions


def bench_and_report(artifacts: Sequence[Path], options: BenchOptions, json_path: Path | None,
                     markdown_path: Path | None, plot_path: Path | None) -> None:
    from mmad_edge.bench.console import summary_text, write_outputs
    from mmad_edge.bench.suite import run_bench

    report = run_bench(list(artifacts), options)
    typer.echo(summary_text(report))
    for path in write_outputs(report, json_path, markdown_path, plot_path):
        typer.echo(f"wrote {path}", err=True)
    raise typer.Exit(0 if report["results"] else 1)


def bench_serve(url: str, artifacts: Sequence[Path], options: BenchOptions, json_path: Path | None,
                markdown_path: Path | None) -> None:
    """Load the server at ``url`` for ``options.case_budget_s`` seconds per client count."""
    from mmad_edge.bench.serve_load import ServeLoadOptions, run_serve_load, summary_text, write_serve_load

    if len(artifacts) != 1:
        fail(f"bench --serve takes the one artifact the server serves (to time it in process too), got "
             f"{len(artifacts)}; pass it: mmad-edge bench EXPORT --serve URL")
    report = run_serve_load(str(artifacts[0]), ServeLoadOptions(url=url, duration_s=options.case_budget_s,
                                                                progress=options.progress))
    typer.echo(summary_text(report))
    for path in write_serve_load(report, json_path, markdown_path):
        typer.echo(f"wrote {path}", err=True)
