"""Basler cameras through pypylon; with ``PYLON_CAMEMU=N`` pylon's emulated cameras, which serve
the images of a folder (``ImageFilename=DIR&ImageFileMode=On&TestImageSelector=Off``)."""

from __future__ import annotations

from pypylon import genicam, pylon

from .source import CameraFault, FrameLost, Grab, select_device
from .url import CameraUrl


def _why(exc: Exception) -> str:
    """pylon's message without its source-file trailer."""
    return str(exc).split(" : ", 1)[0].strip()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class PylonFeatures:
    """``Features`` over pylon's node map."""

    def __init__(self, node_map) -> None:
        self._map = node_map

    def _node(self, name: str):
        node = self._map.GetNode(name)
        return node if node is not None and genicam.IsAvailable(node) else None

    def has(self, name: str) -> bool:
        return self._node(name) is not None

    def get(self, name: str) -> str:
        return self._node(name).ToString()

    def set(self, name: str, value: str) -> None:
        try:
            self._node(name).FromString(value)
        except genicam.GenericException as exc:
            raise ValueError(f"{name}={value}: the camera refuses it ({_why(exc)})") from None

    def choices(self, name: str) -> list[str]:
        node = self._node(name)
        return list(node.GetSettableValues()) if isinstance(node, genicam.IEnumeration) else []

    def limits(self, name: str) -> tuple[float, float] | None:
        node = self._node(name)
        if isinstance(node, (genicam.IFloat, genicam.IInteger)):
            return float(node.GetMin()), float(node.GetMax())
        return None

    def execute(self, name: str) -> None:
        self._node(name).Execute()


class PylonCamera:
    """One opened pylon camera; every frame converted to BGR8 (mono, Bayer and RGB formats alike)."""

    def __init__(self, camera: pylon.InstantCamera) -> None:
        self._camera = camera
        self.features = PylonFeatures(camera.GetNodeMap())
        self._converter = pylon.ImageFormatConverter()
        self._converter.OutputPixelFormat = pylon.PixelType_BGR8packed

    def start(self) -> None:
        # One by one: every triggered part's frame is kept, in order (the loop drops stale ones).
        self._camera.StartGrabbing(pylon.GrabStrategy_OneByOne)

    def trigger(self, timeout_s: float) -> None:
        try:
            ready = self._camera.WaitForFrameTriggerReady(_ms(timeout_s), pylon.TimeoutHandling_Return)
            if not ready:
                raise CameraFault(f"not ready for a trigger within {_ms(timeout_s)} ms")
            self._camera.ExecuteSoftwareTrigger()
        except genicam.GenericException as exc:
            raise CameraFault(f"software trigger failed: {_why(exc)}") from None

    def grab(self, timeout_s: float) -> Grab | None:
        try:
            result = self._camera.RetrieveResult(_ms(timeout_s), pylon.TimeoutHandling_Return)
        except genicam.GenericException as exc:
            raise CameraFault(_why(exc)) from None
        if not result.IsValid():
            if self._camera.IsCameraDeviceRemoved():
                raise CameraFault("camera removed (cable or power)")
            return None
        try:
            if not result.GrabSucceeded():
                raise FrameLost(result.GetErrorDescription())
            return Grab(self._converter.Convert(result).GetArray(), int(result.BlockID))
        finally:
            result.Release()

    def close(self) -> None:
        try:
            self._camera.StopGrabbing()
            self._camera.Close()
        except genicam.GenericException:
            pass  # a removed camera cannot be stopped; it is released with the object


def open_camera(url: CameraUrl) -> PylonCamera:
    """The camera of ``url``, opened. Any pylon error on the way is a CameraFault (so the source
    reopens it with backoff), and a camera created but not opened is destroyed, freeing it."""
    factory = pylon.TlFactory.GetInstance()
    doing, camera = "list the cameras", None
    try:
        devices = factory.EnumerateDevices()
        device = devices[select_device(url, [info.GetSerialNumber() for info in devices])]
        doing = f"open {device.GetFriendlyName()}"
        camera = pylon.InstantCamera(factory.CreateDevice(device))
        camera.Open()
        return PylonCamera(camera)
    except BaseException as exc:
        if camera is not None:
            _destroy(camera)
        if isinstance(exc, genicam.GenericException):
            hint = " (in use by another program?)" if camera is not None else ""
            raise CameraFault(f"cannot {doing}: {_why(exc)}{hint}") from None
        raise


def _destroy(camera: pylon.InstantCamera) -> None:
    try:
        camera.DestroyDevice()  # closes it first when open
    except genicam.GenericException:
        pass  # a removed camera: pylon releases it with the object
