"""``http://`` / ``https://`` webhook: POST each message as JSON to the URL, over one kept-alive
connection. A 2xx answer delivers; 408, 429 and 5xx answers and network errors are retried with
backoff; other answers (a 4xx: the endpoint rejects this message) drop it, counted. Credentials:
MMAD_EDGE_WEBHOOK_TOKEN (a bearer token) or MMAD_EDGE_WEBHOOK_USERNAME / _PASSWORD (basic auth).
"""

from __future__ import annotations

import base64
import http.client
import ssl
from urllib.parse import urlsplit

from .base import PermanentDeliveryError, Sink, payload
from .target import SinkSettings, SinkTarget

RETRIED_STATUSES = (408, 429)
STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class WebhookSink(Sink):
    kind = "webhook"

    def __init__(self, target: SinkTarget, settings: SinkSettings) -> None:
        super().__init__(target, settings)
        parts = urlsplit(target.url)
        self.request_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"Content-Type": "application/json", **_authorization(settings)}
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> None:
        timeout = self.settings.timeout_s
        if self.target.scheme == "https":
            context = ssl.create_default_context(cafile=None if self.settings.ca_file is None else str(self.settings.ca_file))
            self._connection = http.client.HTTPSConnection(self.target.host, self.target.port, timeout=timeout,
                                                           context=context)
        else:
            self._connection = http.client.HTTPConnection(self.target.host, self.target.port, timeout=timeout)

    def _deliver(self, message: dict) -> None:
        body = payload(message)
        headers = {**self.headers, "X-Message-Id": str(message.get("message_id", ""))}
        try:
            response = self._post(body, headers)
        except STALE_CONNECTION:  # the server closed the idle kept-alive connection: one fresh try
            self._close_quietly()
            self._ensure_connected()
            response = self._post(body, headers)
        if response.will_close:
            self._close_quietly()
        if 200 <= response.status < 300:
            return
        answer = f"HTTP {response.status} {response.reason}"
        if response.status >= 500 or response.status in RETRIED_STATUSES:
            raise ConnectionError(answer)
        raise PermanentDeliveryError(answer)

    def _post(self, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        self._connection.request("POST", self.request_path, body=body, headers=headers)
        response = self._connection.getresponse()
        response.read()
        return response

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _authorization(settings: SinkSettings) -> dict[str, str]:
    """The Authorization header the credentials give ({} without credentials)."""
    token = settings.secret("MMAD_EDGE_WEBHOOK_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    username = settings.secret("MMAD_EDGE_WEBHOOK_USERNAME")
    if username:
        pair = f"{username}:{settings.secret('MMAD_EDGE_WEBHOOK_PASSWORD') or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


SINK = WebhookSink
