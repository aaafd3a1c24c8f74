"""Read an ONNX file's ``metadata_props`` without the onnx package or a backend.

``ModelProto.metadata_props`` is protobuf field 14, repeated ``StringStringEntryProto``
{key = 1, value = 2}; every other field is skipped by its wire type, so reading the metadata
never parses (or needs the libraries for) the graph; ``with_metadata_prop`` rewrites the entry
the same way (``mmad-edge calibrate-threshold`` on a device without onnx).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

_METADATA_PROPS = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
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


def _spans(data: memoryview) -> Iterator[tuple[int, int, int, memoryview | None]]:
    """(field number, start, end, payload) of every field in order; payload None unless length-delimited."""
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        wire, payload = tag & 7, None
        if wire == _VARINT:
            _, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        elif wire == _LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("field runs past the end of the file")
            payload = data[pos:pos + size]
            pos += size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ProtobufError("truncated field")
        yield tag >> 3, start, pos, payload


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(field number, payload) of each length-delimited field; other wire types are skipped."""
    for number, _, _, payload in _spans(data):
        if payload is not None:
            yield number, payload


def _entry(payload: memoryview) -> dict[int, str]:
    return {key: bytes(value).decode("utf-8", errors="replace") for key, value in _fields(payload) if key in (1, 2)}


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH) + _encode_varint(len(payload)) + payload


def with_metadata_prop(data: bytes, key: str, value: str) -> bytes:
    """ONNX model bytes with ``metadata_props[key] = value``: every other field keeps its bytes and
    place, earlier entries under ``key`` go and the new one comes last (protobuf readers accept
    fields in any order). Lets a device without the onnx package update the embedded metadata."""
    view = memoryview(data)
    kept = [bytes(view[start:end]) for number, start, end, payload in _spans(view)
            if not (number == _METADATA_PROPS and payload is not None and _entry(payload).get(1, "") == key)]
    entry = _length_field(1, key.encode("utf-8")) + _length_field(2, value.encode("utf-8"))
    return b"".join(kept) + _length_field(_METADATA_PROPS, entry)


def read_metadata_props(path: str | os.PathLike[str]) -> dict[str, str]:
    """``metadata_props`` of the ONNX model in ``path`` as a dict (ProtobufError when malformed)."""
    with open(path, "rb") as handle:
        data = memoryview(handle.read())
    props: dict[str, str] = {}
    for number, payload in _fields(data):
        if number != _METADATA_PROPS:
            continue
        entry = _entry(payload)
        props[entry.get(1, "")] = entry.get(2, "")
    return props
