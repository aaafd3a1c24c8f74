"""Any GenICam camera (GigE Vision, USB3 Vision, CoaXPress) through harvesters and a GenTL
producer: the ``.cti`` file its maker supplies, named by ``?cti=PATH``, else every ``.cti`` in
the folders of ``GENICAM_GENTL64_PATH`` (where installers register theirs)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import cv2
import numpy as np
from genicam import genapi
from genicam.genapi import GenericException
from harvesters.core import Harvester

from .source import CameraFault, FrameLost, Grab, select_device
from .url import CameraUrl

PRODUCER_PATH = "GENICAM_GENTL64_PATH"

# GenICam pixel formats to BGR. OpenCV names a Bayer pattern by its second row: RG (RGGB) is BG.
TO_BGR = {
    "Mono8": cv2.COLOR_GRAY2BGR, "RGB8": cv2.COLOR_RGB2BGR, "RGB8Packed": cv2.COLOR_RGB2BGR,
    "BGR8": None, "BGR8Packed": None,
    "BayerRG8": cv2.COLOR_BayerBG2BGR, "BayerBG8": cv2.COLOR_BayerRG2BGR,
    "BayerGR8": cv2.COLOR_BayerGB2BGR, "BayerGB8": cv2.COLOR_BayerGR2BGR,
}


def to_bgr(data: np.ndarray, width: int, height: int, pixel_format: str) -> np.ndarray:
    """A GenTL image component's pixels as an H x W x 3 BGR uint8 frame (a copy)."""
    if pixel_format not in TO_BGR:
        raise ValueError(f"pixel format {pixel_format} is not supported; set one of {', '.join(TO_BGR)} "
                         "(e.g. ?PixelFormat=BGR8)")
    channels = 3 if pixel_format.startswith(("RGB", "BGR")) else 1
    pixels = np.asarray(data, dtype=np.uint8).reshape(height, width, channels)
    code = TO_BGR[pixel_format]
    return pixels.copy() if code is None else cv2.cvtColor(pixels, code)


def producers(url: CameraUrl) -> list[str]:
    """The GenTL producer files to load: ``url.cti``, else those found through ``GENICAM_GENTL64_PATH``."""
    if url.cti is not None:
        if not Path(url.cti).is_file():
            raise ValueError(f"cti={url.cti}: no such file; pass the GenTL producer (.cti) your camera's maker supplies")
        check_loadable(url.cti)
        return [url.cti]
    folders = [Path(part) for part in os.environ.get(PRODUCER_PATH, "").split(os.pathsep) if part]
    found = sorted(str(path) for folder in folders if folder.is_dir() for path in folder.glob("*.cti"))
    if not found:
        raise ValueError(f"no GenTL producer; pass ?cti=/path/to/Producer.cti (from the camera "
                         f"maker's SDK) or set {PRODUCER_PATH} to its folder")
    for path in found:
        check_loadable(path)
    return found


def check_loadable(path: str) -> None:
    """A producer is a shared library: one that does not load fails here in one line (harvesters
    would log a traceback)."""
    try:
        ctypes.CDLL(path)
    except OSError as exc:
        raise ValueError(f"cti={path}: not a loadable GenTL producer ({exc}); pass the .cti built for this "
                         "system (64-bit Linux here)") from None


class GenApiFeatures:
    """``Features`` over a GenApi node map of the ``genicam`` package (what harvesters gives)."""

    def __init__(self, node_map: genapi.NodeMap) -> None:
        self._map = node_map

    def _node(self, name: str):
        if not self._map.has_node(name):
            return None
        node = self._map.get_node(name)
        return node if genapi.is_available(node) else None

    def has(self, name: str) -> bool:
        return self._node(name) is not None

    def get(self, name: str) -> str:
        return self._node(name).to_string()

    def set(self, name: str, value: str) -> None:
        try:
            self._node(name).from_string(value)
        except GenericException as exc:
            raise ValueError(f"{name}={value}: the camera refuses it ({str(exc).split(' : ', 1)[0]})") from None

    def choices(self, name: str) -> list[str]:
        node = self._node(name)
        if not isinstance(node, genapi.IEnumeration):
            return []
        return [symbol for symbol in node.symbolics if genapi.is_available(node.get_entry_by_name(symbol))]

    def limits(self, name: str) -> tuple[float, float] | None:
        node = self._node(name)
        return (float(node.min), float(node.max)) if isinstance(node, (genapi.IFloat, genapi.IInteger)) else None

    def execute(self, name: str) -> None:
        self._node(name).execute()


class GenTLCamera:
    """One camera opened through harvesters (the ``Harvester`` is released with it)."""

    def __init__(self, harvester: Harvester, acquirer) -> None:
        self._harvester = harvester
        self._acquirer = acquirer
        self.features = GenApiFeatures(acquirer.remote_device.node_map)

    def start(self) -> None:
        self._acquirer.start()

    def trigger(self, timeout_s: float) -> None:
        try:
            self.features.execute("TriggerSoftware")
        except GenericException as exc:
            raise CameraFault(f"software trigger failed: {exc}") from None

    def grab(self, timeout_s: float) -> Grab | None:
        try:
            buffer = self._acquirer.try_fetch(timeout=timeout_s)
        except GenericException as exc:
            raise CameraFault(str(exc)) from None
        if buffer is None:
            return None
        with buffer:
            components = buffer.payload.components
            if not components or components[0].data is None:
                raise FrameLost("empty buffer")
            image = components[0]
            frame = to_bgr(image.data, image.width, image.height, image.data_format)
            return Grab(frame, int(buffer.module.frame_id))

    def close(self) -> None:
        try:
            self._acquirer.stop()
            self._acquirer.destroy()
        except GenericException:
            pass  # a removed camera cannot be stopped; the harvester's reset releases it
        self._harvester.reset()


def open_camera(url: CameraUrl) -> GenTLCamera:
    harvester = Harvester()
    try:
        for path in producers(url):
            harvester.add_file(path)
        harvester.update()
        serials = [str(info.serial_number) for info in harvester.device_info_list]
        return GenTLCamera(harvester, harvester.create(select_device(url, serials)))  # reads the node map
    except GenericException as exc:
        harvester.reset()  # destroys the acquirer it created too
        raise CameraFault(f"GenTL: {exc}") from None
    except BaseException:
        harvester.reset()
        raise
