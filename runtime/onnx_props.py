"""Read an ONNX file's ``metadata_props`` without the onnx package or a backend.

``ModelProto.metadata_props`` is protobuf field 14, repeated ``StringStringEntryProto``
{key = 1, value = 2}; every other field is skipped by its wire type, so reading the metadata
never parses (or needs the libraries for) the graph.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, Tuple

_METADATA_PROPS = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: memoryview, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: memoryview) -> Iterator[Tuple[int, memoryview]]:
    """(field number, payload) of each length-delimited field; other wire types are skipped."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == _VARINT:
            _, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        elif wire == _LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("field runs past the end of the file")
            yield tag >> 3, data[pos:pos + size]
            pos += size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    if pos > len(data):
        raise ProtobufError("truncated field")


def read_metadata_props(path: "str | os.PathLike[str]") -> Dict[str, str]:
    """``metadata_props`` of the ONNX model in ``path`` as a dict (ProtobufError when malformed)."""
    with open(path, "rb") as handle:
        data = memoryview(handle.read())
    props: Dict[str, str] = {}
    for number, payload in _fields(data):
        if number != _METADATA_PROPS:
            continue
        entry = {key: bytes(value).decode("utf-8", errors="replace") for key, value in _fields(payload) if key in (1, 2)}
        props[entry.get(1, "")] = entry.get(2, "")
    return props
