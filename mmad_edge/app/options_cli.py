"""Typer parameters from declarations, so each flag is spelled once: where it is declared.

A command's parameters are either options dataclasses, whose fields carry their flag and help as
metadata (``mmad_edge.runtime.flags.Flag.field``), or ``Annotated[T, Flag | Arg]`` for what no
dataclass holds (the artifact, ``--json``). :func:`declared` expands each dataclass into one typer
option per flagged field and hands the command the dataclass built from them.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mmad_edge.runtime.flags import Flag


@dataclasses.dataclass(frozen=True)
class Arg:
    """A positional argument and its help."""

    help: str


@dataclasses.dataclass(frozen=True)
class _Option:
    """One flagged field as a typer option: its parameter name, typer's type and default (... =
    required) and how a given value becomes the field's (``parse``)."""

    param: str
    flag: str
    help: str
    cli_type: Any
    default: Any
    parse: Callable[[Any], Any] | None

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, annotation=self.cli_type,
                                 default=typer.Option(self.default, self.flag, help=self.help))


@dataclasses.dataclass(frozen=True)
class _Group:
    """A dataclass and how each of its set fields is read: an option or a nested group."""

    cls: type
    members: tuple[tuple[str, _Option | _Group], ...]

    def options(self) -> list[_Option]:
        return [o for _, m in self.members for o in ([m] if isinstance(m, _Option) else m.options())]

    def build(self, values: dict[str, Any]) -> Any:
        """The dataclass from the command line's values; a flag left at None (or an empty repeated
        one) leaves its field at the dataclass's default."""
        kwargs = {}
        for name, member in self.members:
            if isinstance(member, _Group):
                kwargs[name] = member.build(values)
                continue
            value = values[member.param]
            if value is None or (isinstance(value, (list, tuple)) and not value):
                continue
            kwargs[name] = member.parse(value) if member.parse else value
        return self.cls(**kwargs)


def _cli_type(annotation: Any, default: Any) -> Any:
    """Typer's type for a field: paths as Path, a comma-list string as str, a sequence as a
    repeated option."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    if any(a is os.PathLike or typing.get_origin(a) is os.PathLike for a in kinds):
        return Path
    if isinstance(default, str):
        return str
    if len(kinds) == 1 and typing.get_origin(kinds[0]) is None:
        return kinds[0]
    if any(typing.get_origin(a) is collections.abc.Sequence for a in kinds):
        return list[str]
    raise TypeError(f"no command-line type for {annotation}; declare the field with cli_type=")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else ...


def _group(cls: type, flags: dict[str, Flag]) -> _Group:
    """``cls``'s fields that carry a flag (in their metadata, or in ``flags`` by name)."""
    hints = typing.get_type_hints(cls)
    members: list[tuple[str, _Option | _Group]] = []
    for f in dataclasses.fields(cls):
        if "nested" in f.metadata:
            members.append((f.name, _group(hints[f.name], f.metadata["nested"])))
            continue
        meta = f.metadata if "flag" in f.metadata else (
            {"flag": flags[f.name].name, "help": flags[f.name].help} if f.name in flags else None)
        if meta is None:
            continue
        default = meta["cli_default"] if "cli_default" in meta else _field_default(f)
        cli_type = meta.get("cli_type") or _cli_type(hints[f.name], default)
        param = meta["flag"].split("/")[0].lstrip("-").replace("-", "_")
        members.append((f.name, _Option(param, meta["flag"], meta["help"],
                                        cli_type | None if default is None else cli_type, default,
                                        meta.get("parse"))))
    return _Group(cls, tuple(members))


def _declared_parameter(name: str, hint: Any, default: Any) -> inspect.Parameter:
    """``Annotated[T, Flag | Arg]``: a typer option or argument of type T."""
    cli_type, declaration = typing.get_args(hint)
    default = ... if default is inspect.Parameter.empty else default
    info = (typer.Argument(default, help=declaration.help) if isinstance(declaration, Arg)
            else typer.Option(default, declaration.name, help=declaration.help))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=cli_type)


def declared(fn: Callable) -> Callable:
    """``fn`` as typer sees a command: one parameter per flag of its options dataclasses and per
    ``Annotated`` declaration; called with the dataclasses built from those flags."""
    hints = typing.get_type_hints(fn, include_extras=True)
    parameters: list[inspect.Parameter] = []
    readers: dict[str, Callable[[dict[str, Any]], Any]] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if dataclasses.is_dataclass(hints[name]):
            group = _group(hints[name], {})
            parameters += [option.parameter() for option in group.options()]
            readers[name] = group.build
        else:
            parameters.append(_declared_parameter(name, hints[name], param.default))
            readers[name] = functools.partial(lambda key, values: values[key], name)
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise TypeError(f"{fn.__name__}: two parameters named {sorted({n for n in names if names.count(n) > 1})}")

    @functools.wraps(fn)
    def command(**values: Any) -> Any:
        return fn(**{name: read(values) for name, read in readers.items()})

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command
