"""``--source pylon://DEVICE?...`` / ``genicam://DEVICE?...``: what camera to open and how to set it up.

DEVICE: empty (the first camera), an index of up to three digits (``0``: the first found), or a
serial number (anything else; Basler serials have eight digits). Query keys: ``trigger`` (``free``,
``software`` or a hardware line such as ``line1``), ``exposure_us``, ``gain_db``, ``timeout_ms``
(how long a frame may take), ``part_ids`` (a software trigger armed by part IDs announced under
this name, ``part_ids.part_id_queue``), ``cti`` (genicam: the GenTL producer file). Any key that
starts with a capital letter is a GenICam feature set as given (``PixelFormat=BGR8``,
``TriggerActivation=FallingEdge``), after the keys above.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES = ("pylon", "genicam")
KEYS = ("trigger", "exposure_us", "gain_db", "timeout_ms", "part_ids", "cti")
DEFAULT_TIMEOUT_MS = 5000
_INDEX = re.compile(r"^\d{1,3}$")
_LINE = re.compile(r"^line\d+$", re.IGNORECASE)
_FEATURE = re.compile(r"^[A-Z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class CameraUrl:
    """One camera source, parsed and checked (``parse_camera_url``)."""

    scheme: str
    device: str = ""
    trigger: str = "free"
    exposure_us: float | None = None
    gain_db: float | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    part_ids: str | None = None
    cti: str | None = None
    features: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The source's name in results: scheme and device, without the settings."""
        return f"{self.scheme}://{self.device}"

    @property
    def index(self) -> int | None:
        """The device as an index into the cameras found, or None when it names a serial."""
        return int(self.device) if _INDEX.match(self.device) else None

    @property
    def software(self) -> bool:
        return self.trigger == "software"

    @property
    def hardware(self) -> bool:
        return self.trigger not in ("free", "software")


def camera_scheme(text: str) -> str | None:
    """The camera scheme ``text`` starts with (``pylon``, ``genicam``), else None."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme if scheme in SCHEMES else None


def parse_camera_url(text: str) -> CameraUrl:
    """``text`` as a ``CameraUrl``; a wrong key or value raises a one-line ValueError naming the fix."""
    scheme = camera_scheme(text)
    if scheme is None:
        raise ValueError(f"{text!r} is not a camera URL; start it with {' or '.join(s + '://' for s in SCHEMES)}")
    parts = urlsplit(text)
    device = unquote(parts.netloc + parts.path).strip("/")
    settings: dict[str, str] = {}
    features: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _FEATURE.match(key):
            features.append((key, value))
        elif key in KEYS:
            settings[key] = value
        else:
            raise ValueError(f"{text}: unknown setting {key!r}; use {', '.join(KEYS)}, or a GenICam feature name "
                             "(capitalised, e.g. PixelFormat=BGR8)")
    if "cti" in settings and scheme != "genicam":
        raise ValueError(f"{text}: cti= names a GenTL producer, which only genicam:// uses")
    trigger = _trigger(text, settings.get("trigger", "free"))
    if "part_ids" in settings and trigger != "software":
        raise ValueError(f"{text}: part_ids= arms a software trigger per announced part; add trigger=software "
                         "(with a hardware trigger the part ID is the camera's frame counter)")
    return CameraUrl(scheme, device, trigger,
                     _number(text, settings, "exposure_us", lambda v: v > 0, "> 0"),
                     _number(text, settings, "gain_db", lambda v: True, "a number"),
                     int(_number(text, settings, "timeout_ms", lambda v: v >= 1 and v == int(v), "a whole number >= 1")
                         or DEFAULT_TIMEOUT_MS),
                     _text(text, settings, "part_ids"), _text(text, settings, "cti"), tuple(features))


def _trigger(text: str, value: str) -> str:
    value = value.strip().lower()
    if value in ("free", "software") or _LINE.match(value):
        return value
    raise ValueError(f"{text}: trigger={value!r} is not free, software or a hardware line (line0, line1, ...)")


def _number(text: str, settings: dict[str, str], key: str, ok, wanted: str) -> float | None:
    if key not in settings:
        return None
    try:
        value = float(settings[key])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{text}: {key}={settings[key]!r} must be {wanted}")
    return value


def _text(text: str, settings: dict[str, str], key: str) -> str | None:
    if key in settings and not settings[key].strip():
        raise ValueError(f"{text}: {key}= is empty; give it a value or leave it out")
    return settings.get(key)
