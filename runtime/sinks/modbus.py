"""``modbus://HOST[:PORT]/coil/N`` or ``/register/N``: a PLC's reject signal over Modbus TCP.

A coil follows the verdict (on: reject, off: pass), or with ``?pulse_ms=MS`` is switched on for
MS milliseconds per reject only. A holding register gets ``message.VERDICT_CODES`` (0 pass,
1 reject, 2 unknown). ``?unit=ID`` picks the device (default 1). A frame without a verdict (no
threshold known) cannot drive a coil: it is dropped, counted.
"""

from __future__ import annotations

from pymodbus.client import ModbusTcpClient

from ..errors import SinkError
from .base import PermanentDeliveryError, Sink
from .message import VERDICT_CODES
from .target import SinkSettings, SinkTarget

KINDS = ("coil", "register")


class ModbusSink(Sink):
    kind = "modbus"

    def __init__(self, target: SinkTarget, settings: SinkSettings) -> None:
        super().__init__(target, settings)
        kind, _, address = target.path.partition("/")
        if kind not in KINDS or not address.isdigit() or int(address) > 65535:
            raise SinkError(f"sink {target}: the path must be coil/N or register/N with N 0-65535, "
                            "e.g. modbus://HOST:502/coil/0")
        self.what, self.address = kind, int(address)
        self.unit = _query_number(target, "unit", 1, 0, 255)
        self.pulse_s = _query_number(target, "pulse_ms", 0, 0, 60_000) / 1000
        if self.pulse_s and kind != "coil":
            raise SinkError(f"sink {target}: pulse_ms drives a coil; drop it or write to modbus://HOST:502/coil/N")
        self._client: ModbusTcpClient | None = None

    def _connect(self) -> None:
        self._client = ModbusTcpClient(self.target.host, port=self.target.port or 502, timeout=self.settings.timeout_s,
                                       retries=0)
        if not self._client.connect():
            raise ConnectionError(f"no Modbus TCP answer from {self.target.host}:{self.target.port or 502}")

    def _deliver(self, message: dict) -> None:
        verdict = message["verdict"]
        if self.what == "register":
            self._check(self._client.write_register(self.address, VERDICT_CODES[verdict], device_id=self.unit))
            return
        if verdict == "unknown":
            raise PermanentDeliveryError("no verdict without a threshold; pass --threshold")
        if not self.pulse_s:
            self._check(self._client.write_coil(self.address, verdict == "reject", device_id=self.unit))
        elif verdict == "reject":
            self._check(self._client.write_coil(self.address, True, device_id=self.unit))
            self._stop.wait(self.pulse_s)
            self._check(self._client.write_coil(self.address, False, device_id=self.unit))

    def _check(self, response: object) -> None:
        if response.isError():
            raise PermanentDeliveryError(f"the device refused the write: {response}")

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _query_number(target: SinkTarget, name: str, default: int, low: int, high: int) -> int:
    text = target.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise SinkError(f"sink {target}: {name} must be a whole number {low}-{high}, got {text!r}")
    return int(text)


SINK = ModbusSink
