"""GenICam industrial cameras as sources of ``run``: ``pylon://`` (Basler's pypylon) and
``genicam://`` (harvesters with the GenTL producer the user names). One module per driver, each
with ``open_camera(url) -> Camera``; ``DRIVERS`` maps a URL scheme to it and to the package it needs.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from ..errors import BackendUnavailableError, install_hint
from .part_ids import PartIdProvider, PartIdQueue, part_id_queue
from .url import CameraUrl, camera_scheme, parse_camera_url

# scheme -> (driver module, the package it imports)
DRIVERS = {"pylon": ("pylon", "pypylon"), "genicam": ("gentl", "harvesters")}


def open_camera(text: str, part_ids: PartIdProvider | None = None, **options: Any):
    """The ``CameraSource`` for a camera URL (``url``); ``options`` go to it (e.g. ``retry_s``).
    Nothing is opened yet; a missing package fails here, naming what to install."""
    from .source import CameraSource

    url = parse_camera_url(text)
    module, package = DRIVERS[url.scheme]
    if importlib.util.find_spec(package) is None:
        raise BackendUnavailableError(f"{url.scheme}:// cameras need the {package} package; " +
                                      install_hint("camera"))
    driver = importlib.import_module(f"{__name__}.{module}")
    return CameraSource(url, driver.open_camera, part_ids=part_ids, **options)


__all__ = ["CameraUrl", "DRIVERS", "PartIdProvider", "PartIdQueue", "camera_scheme", "open_camera",
           "parse_camera_url", "part_id_queue"]
