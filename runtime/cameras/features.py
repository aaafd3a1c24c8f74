"""Setting a GenICam camera up the same way whatever library reaches it (pylon or GenTL).

Names follow the SFNC (``TriggerMode``, ``ExposureTime``, ``Gain``), with the older Basler GigE
names (``ExposureTimeAbs``, ``GainAbs``) as fall-backs. A value the camera refuses fails at open,
naming the feature, the value and what the camera accepts.
"""

from __future__ import annotations

from typing import Protocol

from .url import CameraUrl


class Features(Protocol):
    """A camera's GenICam node map, as the drivers expose it."""

    def has(self, name: str) -> bool: ...

    def get(self, name: str) -> str: ...

    def set(self, name: str, value: str) -> None:
        """Set from text (GenApi's FromString); raises ValueError naming the feature when refused."""

    def choices(self, name: str) -> list[str]:
        """An enumeration's entries that can be set now ([] for other kinds)."""

    def limits(self, name: str) -> tuple[float, float] | None:
        """A number's (min, max), None for other kinds."""

    def execute(self, name: str) -> None: ...


EXPOSURE = ("ExposureTime", "ExposureTimeAbs")
GAIN = ("Gain", "GainAbs")


def configure(features: Features, url: CameraUrl) -> None:
    """Trigger, exposure and gain as ``url`` asks, then its GenICam features in the order given."""
    configure_trigger(features, url.trigger)
    if url.exposure_us is not None:
        set_number(features, EXPOSURE, "ExposureAuto", url.exposure_us, "exposure_us")
    if url.gain_db is not None:
        set_number(features, GAIN, "GainAuto", url.gain_db, "gain_db")
    for name, value in url.features:
        if not features.has(name):
            raise ValueError(f"the camera has no feature {name!r} (or not now); check the name in the camera's "
                             "documentation")
        features.set(name, value)


def configure_trigger(features: Features, trigger: str) -> None:
    """``free``: trigger mode off. ``software`` / ``lineN``: frame start on that trigger source."""
    if not features.has("TriggerMode"):
        if trigger == "free":
            return
        raise ValueError(f"trigger={trigger}: the camera has no TriggerMode feature; use trigger=free")
    if "FrameStart" in features.choices("TriggerSelector"):
        features.set("TriggerSelector", "FrameStart")
    if trigger == "free":
        features.set("TriggerMode", "Off")
        return
    sources = features.choices("TriggerSource")
    source = next((entry for entry in sources if entry.lower() == trigger), None)
    if source is None:
        lines = [entry.lower() for entry in sources if entry.lower().startswith("line")]
        raise ValueError(f"trigger={trigger}: the camera cannot be triggered so; use trigger=free, software"
                         f"{''.join(', ' + line for line in lines)}")
    features.set("TriggerSource", source)
    features.set("TriggerMode", "On")


def set_number(features: Features, names: tuple[str, ...], auto: str, value: float, key: str) -> None:
    """Switch the automatic control off and set the first of ``names`` the camera has, in its range."""
    name = next((name for name in names if features.has(name)), None)
    if name is None:
        raise ValueError(f"{key}: the camera has none of {', '.join(names)}; set its own feature instead "
                         "(e.g. GainRaw=100)")
    if features.has(auto):
        features.set(auto, "Off")
    limits = features.limits(name)
    if limits is not None and not limits[0] <= value <= limits[1]:
        raise ValueError(f"{key}={value:g} is outside the camera's range {limits[0]:g} to {limits[1]:g} ({name})")
    features.set(name, repr(float(value)))
