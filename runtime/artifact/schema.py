"""The metadata schema (schema_version 1), declared once, and the one checker that reads it.

Each ``Rule`` says what one field must be. ``check(..., strict=True)`` is the export's validation:
every rule, every field present. ``strict=False`` is the runtime's check on every load: only
the rules marked ``runtime`` (the fields a detector acts on), absent fields taking their
``default``, null ones skipped where ``nullable``; its errors name the file and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ArtifactError
from .contract import (
    CHANNEL_ORDER,
    INPUT_DTYPE,
    INPUT_LAYOUT,
    INPUT_NAME,
    OUTPUT_DTYPE,
    OUTPUT_NAMES,
    PRECISIONS,
    SCHEMA_VERSION,
)

ARTIFACT_STATISTICS = "statistics_by_artifact"
DEFAULT_BATCH = 1  # the runtime's batch min / max where the metadata gives none
_MISSING = object()
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
Test = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], bool]  # (value, its section, the document)
Expected = str | Callable[[Mapping[str, Any], str, Mapping[str, Any]], str]  # (section, its label, document)


class MetadataError(ArtifactError):
    """Metadata that is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class Rule:
    """What the field ``key`` of a section must be: ``test`` passes; ``expected`` follows "must"."""

    key: str
    test: Test
    expected: Expected
    runtime: bool = False  # the runtime acts on it: checked on every load too
    optional: bool = False  # may be absent
    nullable: bool = False  # the runtime reads null as absent
    default: Any = _MISSING  # the runtime's value when absent
    fields: tuple[Rule, ...] = ()  # the rules of the object it holds
    entries: Rule | None = None  # the rule each value of the object it holds follows
    entry: str = ""  # how the runtime's errors name one entry, e.g. "category"


def _value(test: Callable[[Any], bool]) -> Test:
    return lambda value, section, document: test(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _null_or_mapping(value: Any) -> bool:
    return value is None or is_mapping(value)


def _equal(key: str, expected: Any) -> Rule:
    return Rule(key, _value(lambda v: v == expected), f"be {expected!r}")


def _batch(runtime: bool) -> tuple[Rule, ...]:
    """min <= opt <= max, positive integers (the runtime reads min and max)."""
    return (
        Rule("min", _value(is_int), "be an integer", runtime, default=DEFAULT_BATCH),
        Rule("min", _value(lambda v: v > 0), "be a positive integer", runtime, default=DEFAULT_BATCH),
        Rule("opt", lambda v, s, d: is_int(v) and v >= s["min"], lambda s, label, d: f"be an integer >= {label}.min ({s['min']})"),
        Rule("max", _value(is_int), "be an integer", runtime, default=DEFAULT_BATCH),
        Rule("max", lambda v, s, d: v >= s["opt"], lambda s, label, d: f"be an integer >= {label}.opt ({s['opt']})"),
        Rule("max", lambda v, s, d: v >= s["min"], lambda s, label, d: f"be an integer >= {label}.min ({s['min']})",
             runtime, default=DEFAULT_BATCH),
    )


def _size(key: str) -> tuple[Rule, ...]:
    """A positive integer; the export's validation also holds it to the model's image size."""
    return (Rule(key, _value(lambda v: is_int(v) and v > 0), "be a positive integer", runtime=True),
            Rule(key, lambda v, s, d: v == d["model"]["image_size"],
                 lambda s, label, d: f"be {d['model']['image_size']} (model.image_size)"))


NUMBER = "be a finite number"
STATISTICS = (  # one set of statistics: the pooled ones, a category's, a calibrated graph's
    Rule("threshold", _value(is_number), NUMBER, runtime=True, nullable=True),
    Rule("normalization", _value(is_mapping), 'be an object {"low": ..., "high": ...}', runtime=True, nullable=True,
         fields=(Rule("low", _value(is_number), NUMBER, runtime=True), Rule("high", _value(is_number), NUMBER, runtime=True))),
)
CATEGORIES = Rule("categories", _value(lambda v: is_mapping(v) and all(map(is_mapping, v.values()))),
                  "map names to objects", runtime=True, optional=True, nullable=True,
                  entries=Rule("statistics", _value(is_mapping), "be an object", fields=STATISTICS), entry="category")
SCHEMA: tuple[Rule, ...] = (
    Rule("schema_version", _value(lambda v: v == SCHEMA_VERSION),
         f"be {SCHEMA_VERSION} (this mmad-edge reads schema {SCHEMA_VERSION} only)"),
    Rule("mmad_edge_version", _value(is_text), "be a version string"),
    Rule("precision", _value(lambda v: v in PRECISIONS), f"be one of {', '.join(PRECISIONS)}"),
    Rule("opset", _value(lambda v: is_int(v) and v > 0), "be a positive integer"),
    Rule("model", _value(is_mapping), "be an object (the model config)",
         fields=(Rule("image_size", _value(lambda v: is_int(v) and v > 0), "be a positive integer"),)),
    Rule("input", _value(is_mapping), "be an object", runtime=True, fields=(
        _equal("name", INPUT_NAME), _equal("layout", INPUT_LAYOUT), _equal("dtype", INPUT_DTYPE),
        _equal("channel_order", CHANNEL_ORDER), *_size("height"), *_size("width"))),
    Rule("outputs", _value(is_mapping), "be an object", fields=tuple(
        Rule(name, _value(is_mapping), "be an object", fields=(
            Rule("shape", _value(lambda v: isinstance(v, list) and bool(v)), "be a non-empty list"),
            _equal("dtype", OUTPUT_DTYPE))) for name in OUTPUT_NAMES)),
    Rule("batch", _value(is_mapping), "be an object with min, opt, max", runtime=True, nullable=True, default={},
         fields=_batch(runtime=True)),
    Rule("statistics", _value(_null_or_mapping), "be null or an object", runtime=True, nullable=True,
         fields=(*STATISTICS, CATEGORIES)),
    Rule(ARTIFACT_STATISTICS, _value(is_mapping), "map graph file names to statistics", runtime=True, optional=True,
         nullable=True, entries=Rule("statistics", _value(_null_or_mapping), "be null or an object", fields=STATISTICS),
         entry=ARTIFACT_STATISTICS),
    Rule("source_checkpoint", _value(_null_or_mapping), "be null or an object", fields=(
        Rule("path", _value(is_text), "be a path string"),
        Rule("sha256", _value(lambda v: isinstance(v, str) and bool(_SHA256.match(v))), "be 64 lowercase hex digits"))),
    Rule("encoder_weights", _value(_null_or_mapping), "be null or an object", optional=True,  # absent before it was recorded
         fields=(Rule("kind", _value(is_text), "be a string (imagenet, file, texture or random)"),)),
    Rule("tensorrt", _value(is_mapping), "be an object", optional=True, fields=(  # engine sidecars only
        *(Rule(key, _value(is_text), "be a non-empty string") for key in ("version", "gpu", "compute_capability")),
        Rule("profile", _value(is_mapping), "be an object with min, opt, max", fields=_batch(runtime=False)),
        Rule("version_compatible", _value(lambda v: isinstance(v, bool)), "be true or false"),
        Rule("dla_core", _value(lambda v: v is None or is_int(v) and v >= 0), "be null or a DLA core number >= 0"))),
)


def check(document: Mapping[str, Any], strict: bool, source: str = "") -> None:
    """Raise on the first field of ``document`` that breaks ``SCHEMA`` (see the module docstring):
    MetadataError naming the field (``strict``), else ArtifactError naming ``source`` and the fix."""
    _check_fields(SCHEMA, document, document, strict, "", source)


def _check_fields(rules: tuple[Rule, ...], section: Mapping[str, Any], document: Mapping[str, Any], strict: bool,
                  label: str, source: str) -> None:
    if not strict:
        section = {**{r.key: r.default for r in rules if r.default is not _MISSING}, **section}
    for rule in rules:
        if not (strict or rule.runtime):
            continue
        where = f"{label}.{rule.key}" if label else rule.key
        value = section.get(rule.key, _MISSING)
        if value is _MISSING and (rule.optional or (rule.nullable and not strict)):
            continue
        if value is _MISSING:
            raise MetadataError(f"metadata field {where!r} is missing; re-export the model with mmad-edge export") \
                if strict else ArtifactError(f"{source}: metadata lacks {where}; re-export the model")
        if not (value is None and rule.nullable and not strict):
            _check_value(rule, value, section, document, strict, where, source)


def _check_value(rule: Rule, value: Any, section: Mapping[str, Any], document: Mapping[str, Any], strict: bool,
                 where: str, source: str) -> None:
    """``value`` against ``rule``, then what it holds against the rule's fields or entries."""
    if not rule.test(value, section, document):
        expected = rule.expected if isinstance(rule.expected, str) else rule.expected(section, where.rpartition(".")[0],
                                                                                      document)
        if strict:
            raise MetadataError(f"metadata field {where!r} must {expected}, got {value!r}")
        raise ArtifactError(f"{source}: metadata {where} must {expected}, got {value!r}; "
                            "fix it in metadata.json or re-export the model")
    if not is_mapping(value):
        return
    if rule.entries is not None:
        for name, entry in value.items():  # the runtime names the entry in the source, as its own section
            label, named = (f"{where}[{name!r}]", source) if strict else (rule.entries.key, f"{source} ({rule.entry} {name})")
            _check_value(rule.entries, entry, value, document, strict, label, named)
    elif rule.fields:
        _check_fields(rule.fields, value, document, strict, where, source)
