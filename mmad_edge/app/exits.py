"""How the CLI ends: one-line errors and the exit codes (2 bad input, 1 a failed check or build or a
run whose verdicts were lost, 3 no TensorRT / GPU, 130 interrupted), never a traceback for a user's
mistake."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn

import typer

from mmad_edge.runtime.errors import BackendUnavailableError, SourceError, install_hint, one_line

# What each install extra brings (top-level module names): a command that needs one of them says
# which extra to install instead of a traceback on a runtime-only install.
EXTRA_MODULES = {
    "train": frozenset({"torch", "scipy", "sklearn", "skimage", "matplotlib"}),
    "export": frozenset({"torch", "scipy", "sklearn", "skimage", "matplotlib", "onnx", "onnxsim", "onnxruntime"}),
}


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable) -> Callable:
    """Turn bad input, unusable files, missing backends and dead sources into one-line exits (code 2)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, FloatingPointError, BackendUnavailableError, SourceError) as exc:
            fail(one_line(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
    return wrapper


def needs(extra: str) -> Callable:
    """Stop with the extra to install when the command's stack is missing (e.g. torch under ".[ort]")."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ModuleNotFoundError as exc:
                module = (exc.name or "").split(".")[0]
                if module not in EXTRA_MODULES[extra]:
                    raise
                command = fn.__name__.removesuffix("_cmd").replace("_", "-")
                fail(f"mmad-edge {command} needs {module}, which this install lacks; "
                     f"{install_hint(extra)}")
        return wrapper
    return decorate


def build_exit_code(exc: BaseException | None) -> int:
    """The exit code of a failed engine build: 3 no TensorRT / GPU, 1 the build failed, 2 bad input."""
    from mmad_edge.export.tensorrt import EngineBuildError, TensorRTUnavailable

    if isinstance(exc, TensorRTUnavailable):
        return 3
    return 1 if isinstance(exc, EngineBuildError) else 2


def exit_of_run(summary: dict) -> None:
    """After the summary was written: a run stopped by Ctrl-C ends with 130; one that finished but
    failed (``summary["error"]``: verdicts that reached neither their sink nor a spool) with 1."""
    if summary.get("interrupted"):
        raise typer.Exit(130)
    if summary.get("error"):
        fail(summary["error"], 1)
