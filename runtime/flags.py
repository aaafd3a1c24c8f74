"""Command-line flags declared beside the option fields they set, as plain dataclass metadata.

The options dataclasses carry their flag and help in ``field(metadata=...)`` so that each flag is
spelled once and the runtime stays free of any CLI library (mmad_edge.app.options_cli turns the
metadata into typer parameters). The flags several commands share are declared here, once.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

from .backends import check_backend
from .backends import choices as backend_choices


@dataclasses.dataclass(frozen=True)
class Flag:
    """A flag's spelling (``--x``, or ``--x/--no-x`` for a switch) and help; ``{}`` in the help is
    where a use adds its detail (e.g. what the scores are counted per). ``check(value, label=...)``
    refuses a bad value at every use with ``label`` this flag, the same check that names the
    keyword in Python, so the command line's error names the flag that was typed."""

    name: str
    help: str
    check: Callable[..., Any] | None = None

    def about(self, detail: str = "", help: str | None = None) -> Flag:
        """This flag with ``detail`` put into its help, or with another ``help`` for one command."""
        return Flag(self.name, help if help is not None else self.help.replace("{}", detail), self.check)

    def field(self, default: Any = MISSING, *, default_factory: Any = MISSING, detail: str = "",
              help: str | None = None, **cli: Any) -> Any:
        """A dataclass field set by this flag. ``cli`` adds what the command line needs beyond the
        field: ``cli_default`` (the flag's own default), ``cli_type`` and ``parse`` (flag value ->
        field value)."""
        flag = self.about(detail, help)
        parse = {"parse": functools.partial(self.check, label=self.name)} if self.check else {}
        return dataclasses.field(default=default, default_factory=default_factory,
                                 metadata={"flag": flag.name, "help": flag.help, **parse, **cli})


def nested(default_factory: Any, **flags: Flag) -> Any:
    """A dataclass-valued field whose fields are flags too: by their own metadata, or, for a class
    declared without flags, by ``flags`` (its field name -> Flag)."""
    return dataclasses.field(default_factory=default_factory, metadata={"nested": flags})


BACKEND = Flag("--backend", f"{', '.join(backend_choices())}{{}}.", check_backend)
PRECISION = Flag("--precision", "Pick fp32/fp16/int8 from an export folder.")
BATCH_SIZE = Flag("--batch-size", "Images per forward pass{}.")
CATEGORY = Flag("--category", "Dataset category; repeat for several (default: all).")
INFERENCE_PRECISION = Flag("--inference-precision",
                           "OpenVINO compute precision: f32, bf16 or f16 (bf16/f16 need the CPU's units){}.")
PERFORMANCE_HINT = Flag("--performance-hint", "OpenVINO hint: latency or throughput{}.")
DRIFT_WINDOW = Flag("--drift-window", "Scores per {} in the drift watch's rolling median.")
DRIFT_TOLERANCE = Flag("--drift-tolerance", "Warn when the rolling median is this many normal std from the normal "
                                            "median (recovered below half).")
METRICS_PORT = Flag("--metrics-port", "Prometheus metrics port.")
SOURCE = Flag("--source", "Camera index (0), rtsp://..., pylon://SERIAL?trigger=line1 or genicam://... (GenICam "
                          "cameras: docs/cameras.md), video file or image folder{}.")
MAX_BATCH = Flag("--max-batch", "Largest dynamic batch (default: the artifact's profile maximum; above the profile "
                                 "of an ONNX graph with a dynamic batch axis it widens it, above a fixed-batch graph "
                                 "or an engine's profile it is refused).")
MAX_QUEUE_DELAY_US = Flag("--max-queue-delay-us", "Microseconds a request may wait for others to fill a batch.")
INSTANCES = Flag("--instances", "Model instances{}.")
FOLLOW = Flag("--follow/--no-follow", "With a deployment folder: follow its current version (a promote or rollback is "
                                     "loaded in the background and swapped in between two {}, said in one line); "
                                     "--no-follow keeps the version loaded at the start.")
MIN_AGREEMENT = Flag("--min-agreement", "Smallest share of images whose verdict (each graph at its own threshold) "
                                        "matches the reference's{}.")
