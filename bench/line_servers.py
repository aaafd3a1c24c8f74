"""Real line-side servers on localhost, for the sink tests and the line latency bench: a mosquitto
broker (a subprocess; Debian package ``mosquitto``), an MQTT subscriber, a webhook receiver
(stdlib ``http.server``), a Modbus TCP server (pymodbus) and an OPC UA server (asyncua). Each
records what arrived and when (``time.time()``, the clock a message's ``timestamp`` uses)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A localhost port free at the moment of asking (the one place tests and benches take ports from)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s") from None
            time.sleep(0.05)


# Debian installs the broker in /usr/sbin, which a normal user's PATH may lack.
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def mosquitto_missing() -> str | None:
    """Why a broker cannot be started here (None when ``mosquitto`` is installed)."""
    if MOSQUITTO is None:
        return "mosquitto is not installed; install it (Debian/Ubuntu: apt-get install mosquitto, macOS: brew install mosquitto)"
    return None


def write_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a localhost server certificate signed by it (PEM): ``ca``, ``cert``, ``key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mmad-edge test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return files


class Mosquitto:
    """A mosquitto broker on 127.0.0.1:``port`` with persistence in ``folder`` (so a restart keeps
    a persistent subscriber's queue); ``users``: name -> password (else anonymous); ``tls``: the
    ``write_certificates`` files."""

    def __init__(self, folder: Path, port: int | None = None, users: dict[str, str] | None = None,
                 tls: dict[str, Path] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.folder}/",
                 f"log_dest file {self.folder / 'mosquitto.log'}"]
        if os.geteuid() == 0:  # as root mosquitto would switch to user mosquitto, who cannot read this folder
            lines.append("user root")
        if users:
            passwords = self.folder / "passwords"
            passwords.write_text("".join(f"{name}:{secret}\n" for name, secret in users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        self.config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self._process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        """Stop gracefully (mosquitto saves its persistence file on SIGTERM)."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class MqttSubscriber:
    """A persistent-session QoS 1 subscriber to ``topic``: messages queued for it while it (or the
    broker) was away arrive once it is back. ``received``: (arrival time, decoded JSON)."""

    def __init__(self, port: int, topic: str, client_id: str = "mmad-edge-test-subscriber") -> None:
        import paho.mqtt.client as paho

        self.received: list[tuple[float, dict]] = []
        self._subscribed = threading.Event()
        self._cond = threading.Condition()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self._client.reconnect_delay_set(0.05, 0.5)
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            raise TimeoutError(f"could not subscribe to {topic} on 127.0.0.1:{port}")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._cond:
            self.received.append((time.time(), json.loads(message.payload)))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """True once ``count`` distinct message ids arrived, False after ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(lambda: len({body["message_id"] for _, body in self.received}) >= count,
                                       timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class WebhookReceiver:
    """An HTTP(S) server on 127.0.0.1 recording each POST (time, JSON body, headers) and answering
    ``status``; while ``gate`` is cleared every request waits on it (a slow webhook)."""

    def __init__(self, status: int = 200, tls: dict[str, Path] | None = None) -> None:
        self.status = status
        self.received: list[tuple[float, dict, dict]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.arrived:
                    receiver.received.append((time.time(), body, dict(self.headers)))
                    receiver.arrived.notify_all()
                receiver.gate.wait()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls["cert"], tls["key"])
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{'localhost' if tls else '127.0.0.1'}:{self._server.server_port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.received) >= count, timeout_s)

    def close(self) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _LoopThread:
    """An asyncio loop on a daemon thread, for the asyncio servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Any, timeout_s: float = START_TIMEOUT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class ModbusServer:
    """A pymodbus TCP server for device 1 with 64 registers (coils addressed by bit); ``writes``
    records (time, function code, address, values) of every write."""

    def __init__(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.port = free_port()
        self.writes: list[tuple[float, int, int, list]] = []
        self.arrived = threading.Condition()
        device = SimDevice(1, [SimData(0, count=64, datatype=DataType.REGISTERS)], use_bit_addressing=True,
                           action=self._record)
        self._loop = _LoopThread()

        async def serve() -> Any:
            server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            asyncio.ensure_future(server.serve_forever())
            return server

        self._server = self._loop.run(serve())
        wait_for_port(self.port)

    async def _record(self, func_code: int, start: int, address: int, count: int, registers: list,
                      values: list | None) -> None:
        if values is not None:
            with self.arrived:
                self.writes.append((time.time(), func_code, address, list(values)))
                self.arrived.notify_all()
        return None

    def wait_for(self, count: int, timeout_s: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.writes) >= count, timeout_s)

    def close(self) -> None:
        self._loop.run(self._server.shutdown())
        self._loop.close()


class OpcUaServer:
    """An asyncua server with an object ``Inspection`` holding writable variables (``fields``:
    browse name -> ua.VariantType name); ``node`` is the object's node id for an ``opcua://`` URL."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.port = free_port()
        self._loop = _LoopThread()
        self._variables: dict[str, Any] = {}
        self._server = self._loop.run(self._start(fields), timeout_s=60)
        wait_for_port(self.port)

    async def _start(self, fields: dict[str, str]) -> Any:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/")
        namespace = await server.register_namespace("urn:mmad-edge:line-test")
        inspection = await server.nodes.objects.add_object(ua.NodeId("Inspection", namespace), f"{namespace}:Inspection")
        for name, vtype in fields.items():
            variant = ua.VariantType[vtype]
            initial = {"Boolean": False, "String": ""}.get(vtype, 0)
            node = await inspection.add_variable(ua.NodeId(f"Inspection.{name}", namespace), f"{namespace}:{name}",
                                                 ua.Variant(initial, variant))
            await node.set_writable()
            self._variables[name] = node
        await server.start()
        self.node = f"ns={namespace};s=Inspection"
        return server

    def values(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            return {name: await node.read_value() for name, node in self._variables.items()}

        return self._loop.run(read())

    def close(self) -> None:
        self._loop.run(self._server.stop())
        self._loop.close()
