"""``opcua://HOST[:PORT]/NODEID``: write each verdict to the variables of an OPC UA object.

NODEID names an object (e.g. ``ns=2;s=Inspection``) on the PLC or its OPC UA server; the sink
writes those of its child variables it finds by browse name: ``Verdict`` (Boolean: true rejects;
String: reject / pass / unknown; an integer or float type: ``message.VERDICT_CODES``), ``Score``,
``ScoreNormalized``, ``PartId`` and ``MessageId``, each in the variable's own data type, all in
one write. Credentials: MMAD_EDGE_OPCUA_USERNAME / _PASSWORD.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from asyncua import Client, ua

from ..artifact.contract import IS_ANOMALY, OUTPUT_NAMES, SCORE_NORMALIZED
from ..errors import SinkError
from .base import PermanentDeliveryError, Sink
from .message import VERDICT_CODES
from .target import SinkSettings, SinkTarget

# Child browse name (lower case) -> the message field written there.
SCORE = OUTPUT_NAMES[1]
FIELDS = {"verdict": "verdict", SCORE: SCORE, SCORE_NORMALIZED.replace("_", ""): SCORE_NORMALIZED, "partid": "part_id",
          "messageid": "message_id"}
INTEGER_TYPES = {ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
                 ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64}
FLOAT_TYPES = {ua.VariantType.Float, ua.VariantType.Double}


class OpcUaSink(Sink):
    kind = "opcua"

    def __init__(self, target: SinkTarget, settings: SinkSettings) -> None:
        super().__init__(target, settings)
        if not target.path:
            raise SinkError(f"sink {target}: name the object node to write, e.g. opcua://HOST:4840/ns=2;s=Inspection")
        try:
            ua.NodeId.from_string(target.path)
        except ua.UaStringParsingError:
            raise SinkError(f"sink {target}: {target.path!r} is not an OPC UA node id; pass one such as "
                            "ns=2;s=Inspection or ns=2;i=1001") from None
        self.endpoint = f"opc.tcp://{target.host}:{target.port or 4840}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._variables: list[tuple[Any, str, ua.VariantType]] = []  # (node, message field, data type)

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self._loop.run_until_complete(coroutine)

    def _connect(self) -> None:
        self._loop = asyncio.new_event_loop()
        client = Client(self.endpoint, timeout=self.settings.timeout_s)
        username = self.settings.secret("MMAD_EDGE_OPCUA_USERNAME")
        if username is not None:
            client.set_user(username)
            client.set_password(self.settings.secret("MMAD_EDGE_OPCUA_PASSWORD") or "")
        self._client = client
        self._run(client.connect())
        self._variables = self._run(self._find_variables(client))

    async def _find_variables(self, client: Client) -> list[tuple[Any, str, ua.VariantType]]:
        """The object's variables by browse name; a server without the node or the variables is a
        setup error that no retry mends (PermanentDeliveryError: said once, each message dropped)."""
        found = []
        for child in await client.get_node(self.target.path).get_children():  # none for a node the server lacks
            name = (await child.read_browse_name()).Name.lower()
            if name in FIELDS:
                found.append((child, FIELDS[name], await child.read_data_type_as_variant_type()))
        if not found:
            raise PermanentDeliveryError(f"node {self.target.path} has no Verdict, Score, ScoreNormalized, PartId or "
                                         "MessageId variable; add them on the server or name the object that holds "
                                         "them")
        return found

    def _deliver(self, message: dict) -> None:
        writes = []
        for node, field, vtype in self._variables:
            try:
                value = _value(field, message, vtype)
            except (KeyError, ValueError, TypeError) as exc:  # the message cannot take this type: no retry mends it
                raise PermanentDeliveryError(f"{field} {message.get(field)!r} cannot be written to a {vtype.name} "
                                             f"variable ({type(exc).__name__}: {exc})") from None
            if value is not None:
                writes.append((node, value))
        if not writes:
            raise PermanentDeliveryError("nothing to write: no verdict without a threshold; pass --threshold")
        self._run(self._client.write_values([node for node, _ in writes], [value for _, value in writes]))

    def _disconnect(self) -> None:
        client, loop, self._client, self._loop = self._client, self._loop, None, None
        if loop is None:
            return
        try:
            if client is not None:
                loop.run_until_complete(client.disconnect())
        finally:
            _close_loop(loop)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the client left running (its receive tasks after a failed connect) and close the loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def _value(field: str, message: dict, vtype: ua.VariantType) -> ua.DataValue | None:
    """``message[field]`` as a value of ``vtype`` (None: nothing to write, e.g. an unknown verdict on a Boolean)."""
    value = message.get(field)
    if field == "verdict":
        value = {ua.VariantType.Boolean: message.get(IS_ANOMALY), ua.VariantType.String: value}.get(
            vtype, VERDICT_CODES[value] if vtype in INTEGER_TYPES | FLOAT_TYPES else value)
    if value is None:
        return None
    if vtype in FLOAT_TYPES:
        value = float(value)
    elif vtype in INTEGER_TYPES:
        value = int(value)
    elif vtype == ua.VariantType.String:
        value = str(value)
    return ua.DataValue(ua.Variant(value, vtype))


SINK = OpcUaSink
