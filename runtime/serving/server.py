"""`mmad-edge serve`: Detectors behind a real Triton Inference Server, through PyTriton.

Triton does the serving (HTTP/gRPC with the KServe v2 protocol, dynamic batching across
clients, health endpoints, Prometheus metrics); we bind one inference callable per model
instance. Our own metrics and the drift watch (``watch.ServeWatch``) see every instance's
scores; they are served apart from Triton's metrics. Triton itself refuses a request whose
``image`` has the wrong dtype, rank or channel count (the model config declares uint8
``[-1, -1, 3]``), before it is batched with others.

Readiness tells the truth: the model is written to the model store before tritonserver starts, so
it is loaded before the HTTP/gRPC ports open (PyTriton's default loads it afterwards, and an empty
server answers ready for about a second). A request that arrives before our inference callable is
attached waits for it. Then one self-test frame goes through the server's own HTTP endpoint and its
answer must equal the in-process Detector's (``selftest``); only then does `serve` print that it is
ready, and a failure stops it with one line.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifact.contract import CATEGORY_INPUT, INPUT_NAME, IS_ANOMALY, OUTPUT_NAMES, SCORE_NORMALIZED, SERVING_MODEL
from ..artifact.deployment import deployed_folder, is_deployment
from ..detector import Detector
from ..errors import BackendUnavailableError, install_hint
from ..loop.follow import CHECK_EVERY_S
from ..ui.security import is_loopback, resolve_token
from .console import tritonserver_console_to
from .follow import ServeFollower
from .handler import InferenceHandler
from .libpython import prefer_own_libpython
from .options import TOKEN, ServeOptions
from .rejection import teach_proxy_model
from .selftest import run_self_test, self_test_frame
from .watch import ServeWatch

if TYPE_CHECKING:
    from ..ui.page import ThresholdsFor

INSTALL = install_hint("serve")


def import_pytriton() -> Any:
    """The ``pytriton.triton`` module, or BackendUnavailableError naming the extra to install."""
    try:
        import pytriton.triton as triton_module
    except ImportError as exc:
        raise BackendUnavailableError(f"mmad-edge serve needs nvidia-pytriton ({exc.name or exc} is missing); "
                                      f"{INSTALL}") from None
    return triton_module


def load_detectors(artifact: str | Path, options: ServeOptions) -> list[Detector]:
    """One Detector per instance (each its own session or engine context)."""
    detectors: list[Detector] = []
    try:
        for _ in range(options.instances):
            detectors.append(Detector.load(artifact, backend=options.backend, precision=options.precision,
                                           max_batch=options.max_batch, threads=options.threads))
    except BaseException:
        for detector in detectors:
            detector.close()
        raise
    return detectors


def tensors(tensor: Callable[..., Any], size: int) -> dict[str, list]:
    """The model's inputs and outputs as PyTriton Tensors (shapes without the batch dimension)."""
    map_name, score_name = OUTPUT_NAMES
    return {
        "inputs": [tensor(name=INPUT_NAME, dtype=np.uint8, shape=(-1, -1, 3)),
                   tensor(name=CATEGORY_INPUT, dtype=np.bytes_, shape=(1,), optional=True)],
        "outputs": [tensor(name=score_name, dtype=np.float32, shape=(1,)),
                    tensor(name=SCORE_NORMALIZED, dtype=np.float32, shape=(1,)),
                    tensor(name=IS_ANOMALY, dtype=np.bool_, shape=(1,)),
                    tensor(name=map_name, dtype=np.float32, shape=(size, size))],
    }


def check_ports_free(options: ServeOptions) -> None:
    """Fail before starting anything when a port is taken (tritonserver would exit with it in its log)."""
    for flag, port in options.ports().items():
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError as exc:
                raise OSError(f"port {port} ({flag}) is not free ({exc.strerror}); stop what uses it or pass "
                              f"another {flag}") from None


def reachable_host(host: str) -> str:
    """The name a client on this machine uses for ``host`` (any-address binds answer on localhost)."""
    if host in ("0.0.0.0", "::", "") or is_loopback(host):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def urls(options: ServeOptions) -> dict[str, str]:
    """Where clients reach the server (the metrics on this machine only)."""
    host = reachable_host(options.host)
    found = {"http": f"http://{host}:{options.http_port}", "grpc": f"{host}:{options.grpc_port}",
             "metrics": f"http://localhost:{options.metrics_port}/metrics",
             "ready": f"http://{host}:{options.http_port}/v2/health/ready"}
    if options.app_metrics_port is not None:
        found["app_metrics"] = f"http://localhost:{options.app_metrics_port}/metrics"
    return found


def describe(detector: Detector, options: ServeOptions, watch: ServeWatch, token: str | None) -> dict[str, Any]:
    """The summary printed at start and returned at stop."""
    described = detector.backend.describe()
    return {"model": SERVING_MODEL, "artifact": str(detector.backend.path), "backend": described.get("backend"),
            "device": described.get("device"), "precision": detector.info.precision,
            "image_size": list(detector.image_size), "max_batch": detector.batch_max,
            "max_queue_delay_us": options.max_queue_delay_us, "instances": options.instances,
            "threshold": detector.threshold, "categories": sorted(detector.info.categories), "urls": urls(options),
            "triton_log": str(options.triton_log()), "triton_console": str(options.triton_console()), "drift_watch": watch.describe(),
            "events": options.events_path, "host": options.host,
            "token": None if token is None else "required: triton-access-token header"}


def start_line(summary: dict[str, Any]) -> str:
    """One readable paragraph: what is served where, and how to stop it."""
    size = "x".join(str(side) for side in summary["image_size"])
    links = summary["urls"]
    ours = ""
    if "app_metrics" in links:
        ours = f"\n  app metrics {links['app_metrics']} (frames, latency, drift per category)"
    return (f"serving {summary['model']}: {summary['artifact']} on {summary['backend']} ({summary['device']}), "
            f"{summary['precision']}, {size}, batch up to {summary['max_batch']}, {summary['instances']} "
            f"instance(s)\n  HTTP {links['http']}  gRPC {links['grpc']}  metrics {links['metrics']}{ours}\n"
            f"  listening on {summary['host']}"
            + (f", token {summary['token']} (health open)" if summary["token"] else " (this machine only)") + "\n"
            + deployment_line(summary)
            + f"  {summary['drift_watch']}\n"
            f"  ready: the self-test frame came back as served in process; {links['ready']} answers 200; "
            f"Triton's log: {summary['triton_log']} (its console: {summary['triton_console']}); Ctrl-C or SIGTERM "
            "stops it")


def deployment_line(summary: dict[str, Any]) -> str:
    """The start line's word on the deployment folder served from, if any (empty otherwise)."""
    if "deployment" not in summary:
        return ""
    how = ("following current (a promote or rollback is swapped in between two executions)" if summary["follow"]
           else "not following current (--no-follow)")
    return f"  deployment {summary['deployment']}: serving {summary['version']}, {how}\n"


def stop_line(totals: dict[str, int]) -> str:
    return (f"stopped: {totals['requests']} requests, {totals['images']} images in {totals['executions']} "
            f"batches (largest {totals['largest_batch']}), {totals['rejected']} rejected (400), "
            f"{totals['drift_events']} drift events")


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (in the main thread; elsewhere the caller sets it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = lambda signum, frame: stop.set()  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# Triton's API groups a token guards (everything but health, which probes read without one).
GUARDED = ["metadata", "inference", "shared-memory", "model-config", "model-repository", "statistics", "trace",
           "logging"]


def triton_server(triton_module: Any, handlers: list[InferenceHandler], options: ServeOptions,
                  token: str | None) -> Any:
    """A started Triton with the model bound (PyTriton's own threads and processes), listening on
    ``options.host``; with ``token``, every API but health needs it."""
    from pytriton.client.exceptions import PyTritonClientError
    from pytriton.exceptions import PyTritonError
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.utils.workspace import Workspace

    # The model store is written before tritonserver starts (local_model_store), so the model is
    # loaded before the ports open. A model that fails to load leaves tritonserver up without it
    # (exit_on_error off) and non-strict readiness lets PyTriton go on to attach the callable, which
    # fails within seconds; with either on, PyTriton would wait 120 s for a server that never comes.
    config = triton_module.TritonConfig(http_address=options.host, http_port=options.http_port,
                                        grpc_address=options.host, grpc_port=options.grpc_port,
                                        metrics_address="127.0.0.1", metrics_port=options.metrics_port,
                                        exit_timeout_secs=options.exit_timeout_s, log_verbose=0,
                                        log_file=options.triton_log(), exit_on_error=False, strict_readiness=False)
    policy = triton_module.TritonLifecyclePolicy(launch_triton_on_startup=True, local_model_store=True)
    # Without a token of ours, PyTriton's default: a random one guards the management APIs.
    security = None if token is None else triton_module.TritonSecurityConfig(access_token=token,
                                                                             restricted_endpoints=GUARDED)
    workspace = Workspace()
    triton = triton_module.Triton(config=config, workspace=workspace, triton_lifecycle_policy=policy,
                                  security_config=security)
    try:
        detector = handlers[0].detector
        batcher = DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us)
        triton.bind(model_name=SERVING_MODEL, infer_func=list(handlers),
                    config=ModelConfig(max_batch_size=detector.batch_max, batcher=batcher),
                    strict=False, **tensors(Tensor, detector.image_size[0]))
        teach_proxy_model(workspace.model_store_path, SERVING_MODEL)
        triton.run()
    except (PyTritonError, PyTritonClientError, TimeoutError, RuntimeError) as exc:  # tritonserver died / not ready
        triton.stop()
        raise BackendUnavailableError(f"tritonserver did not start ({str(exc).splitlines()[0]}); its log: "
                                      f"{options.triton_log()}") from None
    except BaseException:
        triton.stop()
        raise
    return triton


def serve(artifact: str, options: ServeOptions = ServeOptions(), stop: threading.Event | None = None,
          announce: Callable[[str], None] = print, thresholds: ThresholdsFor | None = None) -> dict[str, Any]:
    """Serve ``artifact`` until SIGINT / SIGTERM (or ``stop`` is set); returns the summary with
    what was served. ``announce`` gets the start and stop lines. ``options.page.ui``: the live page
    too, one source per category, Apply through ``thresholds`` (as ``run_stream``'s). ``artifact`` a
    deployment folder: with ``options.follow`` a change of its ``current`` is swapped in between two
    executions (``follow``; summary ``"version"`` and ``"swaps"``)."""
    options.check()
    token = resolve_token(options.host, options.token_file, source=TOKEN)
    check_ports_free(options)
    triton_module = import_pytriton()
    # PyTriton logs a traceback per failed request; the client gets the error, the console stays short.
    logging.getLogger("pytriton").setLevel(logging.ERROR)
    prefer_own_libpython()
    stop = stop or threading.Event()
    folder = deployed_folder(artifact)  # the version current names now (any other path as it is)
    detectors = load_detectors(folder, options)
    watch = ServeWatch(detectors[0].info.raw.get("statistics"), options)
    page = None
    handlers = [InferenceHandler(detector, watch) for detector in detectors]
    following = ServeFollower(Path(artifact), folder.name, handlers, lambda path: load_detectors(path, options),
                              CHECK_EVERY_S if options.follow else None) if is_deployment(artifact) else None
    try:
        watch.open(options.app_metrics_port, options.events_path)
        if options.page.ui is not None:
            from ..ui.page import LivePage

            page = LivePage.open(options.page, detectors, SERVING_MODEL, thresholds, options.drift_tolerance)
            for handler in handlers:
                handler.page = page
        summary = describe(detectors[0], options, watch, token)
        if following is not None:
            summary.update(following.report())  # the version at start; at stop, the version then and the swaps
        frame = self_test_frame(detectors[0].image_size)
        expected = detectors[0].predict(frame)[0]  # before the server shares the detector with clients
        with stop_on_signals(stop), tritonserver_console_to(options.triton_console()):
            triton = triton_server(triton_module, handlers, options, token)
            try:
                run_self_test(f"{reachable_host(options.host)}:{options.http_port}", frame, expected, token)
                announce(start_line(summary))
                while not stop.wait(0.5) and triton.is_alive():
                    if following is not None:
                        following.poll()
            finally:
                triton.stop()
    finally:
        watch.close()
        if following is not None:
            following.close()
        if page is not None:
            page.close()
        for handler in handlers:
            handler.close()
    totals = {key: sum(getattr(h.counters, key) for h in handlers)
              for key in ("requests", "images", "executions", "rejected")}
    totals["largest_batch"] = max(h.counters.largest_batch for h in handlers)
    totals.update(watch.summary())
    announce(stop_line(totals))
    return {**summary, "served": totals, **(following.report() if following is not None else {})}
