"""`mmad-edge verify` (and `build-engine --verify`): an artifact's accuracy here, exit 1 when it fails."""

from __future__ import annotations

from pathlib import Path

import typer

from mmad_edge.app.exits import fail
from mmad_edge.app.json_output import write_json
from mmad_edge.export.options import VerifyOptions


def verify_and_report(artifact: Path, options: VerifyOptions, json_path: Path | None = None) -> None:
    """Run ``verify_artifact``, print its summary, exit 1 naming the failed metrics."""
    from mmad_edge.export.device_verification import summary_text, verify_artifact, verify_path

    result = verify_artifact(artifact, options)
    typer.echo(summary_text(result))
    typer.echo(f"wrote {verify_path(result['artifact'])}", err=True)
    write_json(json_path, result)
    if result["passed"] is False:
        fail(f"verification failed: {'; '.join(result['failed'])}", 1)
