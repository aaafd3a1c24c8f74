"""The page's HTTP routes (Starlette): the page, live events, frames, the review queue, the
what-if and Apply. Every route passes ``security.Guard`` first (``GuardMiddleware``).

Routes name sources and review items by number only; review images are read through the review
index (``ReviewStore.image``: an evicted item answers 404 in one line) and the page's own files are
read once at start from the package, so no request path reaches the file system.
"""

from __future__ import annotations

import asyncio
import json
import threading
from importlib import resources
from typing import Any, Protocol

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..loop.overlay import render_overlay
from .review_store import IMAGE_KINDS, ReviewStore, ReviewStoreError
from .security import COOKIE, CSRF_HEADER, Guard
from .state import LiveState
from .whatif import what_if

EVENT_INTERVAL_S = 0.25  # at most four updates a second per open page
DISPLAY_WIDTH = 640  # wider frames are shrunk to this before the overlay is drawn
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
Scoring = tuple[float | None, tuple[float, float] | None]


class Thresholds(Protocol):
    """The running detector's thresholds as the page reads and changes them."""

    def scoring(self, category: str | None) -> Scoring:
        """(threshold, normalisation) frames of ``category`` are judged by now."""

    def apply(self, category: str | None, threshold: float) -> dict:
        """Make ``threshold`` the category's, in the metadata and the running loop; a summary dict.
        ValueError (one line) when it cannot."""


def display_overlay(frame: np.ndarray, result: Any, normalization: tuple[float, float] | None) -> np.ndarray:
    """The heat-map overlay of a frame shrunk to at most ``DISPLAY_WIDTH`` wide (smaller frames are
    drawn as they are: the browser scales them for less work here)."""
    height, width = frame.shape[:2]
    if width > DISPLAY_WIDTH:
        frame = cv2.resize(frame, (DISPLAY_WIDTH, max(1, round(height * DISPLAY_WIDTH / width))),
                           interpolation=cv2.INTER_AREA)
    return render_overlay(frame, result, normalization)


class GuardMiddleware:
    """Token (or Host) on every request, the CSRF checks on every POST; a valid ``?token=`` on the
    page is traded for a cookie and dropped from the address."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        query_token = request.query_params.get("token")
        if not self.guard.host_allowed(request.headers.get("host")):
            response: Response = PlainTextResponse("this page answers to localhost only", status_code=421)
        elif not self.guard.authorized(query_token, request.cookies.get(COOKIE), request.headers.get("authorization")):
            response = PlainTextResponse("token required: open the address with ?token=... (the token the server "
                                         "was started with)", status_code=401)
        elif request.method not in ("GET", "HEAD") and not self.guard.same_site(
                request.headers.get(CSRF_HEADER), request.headers.get("origin"), request.headers.get("host")):
            response = PlainTextResponse("cross-site request refused", status_code=403)
        elif query_token is not None and request.url.path == "/":
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, query_token, httponly=True, samesite="strict")
        else:
            return await self.app(scope, receive, send)
        await response(scope, receive, send)


class UiApp:
    """The routes over one LiveState, ReviewStore and Thresholds; ``asgi`` is the guarded app."""

    def __init__(self, state: LiveState, store: ReviewStore, thresholds: Thresholds, guard: Guard,
                 title: str = "") -> None:
        self.state, self.store, self.thresholds, self.guard = state, store, thresholds, guard
        self.stopping = threading.Event()
        package = resources.files(__package__) / "static"
        self._page = (package / "index.html").read_text(encoding="utf-8").replace(
            "{{csrf}}", guard.csrf).replace("{{title}}", _escape(title or "mmad-edge"))
        self._static = {name: (package / name).read_bytes() for name in STATIC}
        self._frames: dict[int, tuple[int, bytes]] = {}
        self._frames_lock = threading.Lock()
        routes = [
            Route("/", self.page), Route("/static/{name}", self.static),
            Route("/api/state", self.snapshot), Route("/api/events", self.events),
            Route("/api/frame/{source:int}.jpg", self.frame),
            Route("/api/review", self.review_list), Route("/api/review/{item:int}", self.mark, methods=["POST"]),
            Route("/api/review/{item:int}/{kind}.img", self.review_image),
            Route("/api/whatif", self.whatif), Route("/api/apply", self.apply, methods=["POST"]),
        ]
        self.asgi = GuardMiddleware(Starlette(routes=routes), guard)

    def page(self, request: Request) -> Response:
        return Response(self._page, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                            "frame-ancestors 'none'"})

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        return Response(self._static[name], media_type=STATIC[name])

    def _snapshot(self) -> dict:
        return {**self.state.snapshot(), "review": self.store.usage()}

    def snapshot(self, request: Request) -> Response:
        return JSONResponse(self._snapshot())

    async def events(self, request: Request) -> Response:
        """Server-sent events: the snapshot whenever it changed, at most every ``EVENT_INTERVAL_S``."""
        async def stream():
            sent = None
            while not self.stopping.is_set() and not await request.is_disconnected():
                snapshot = await asyncio.to_thread(self._snapshot)
                key = (snapshot["version"], snapshot["review"]["items"], snapshot["review"]["marked"])
                if key != sent:
                    sent = key
                    yield f"data: {json.dumps(snapshot)}\n\n"
                await asyncio.sleep(EVENT_INTERVAL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    def frame(self, request: Request) -> Response:
        """The newest frame of a source with its overlay, encoded once per frame however many ask."""
        index = request.path_params["source"]
        try:
            source, latest = self.state.latest(index)
        except IndexError:
            return PlainTextResponse(f"no source {index}", status_code=404)
        if latest is None:
            return PlainTextResponse("no frame yet", status_code=404)
        with self._frames_lock:
            cached = self._frames.get(index)
            if cached is None or cached[0] != latest.seq:
                normalization = self.thresholds.scoring(source.category)[1]
                overlay = display_overlay(latest.frame, latest.result, normalization)
                cached = (latest.seq, cv2.imencode(".jpg", overlay, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
                self._frames[index] = cached
        return Response(cached[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def review_list(self, request: Request) -> Response:
        marked = {"yes": True, "no": False}.get(request.query_params.get("marked", ""))
        return JSONResponse({"items": [item.to_json() for item in self.store.items(marked, limit=500)],
                             "usage": self.store.usage()})

    def review_image(self, request: Request) -> Response:
        """An item's image, or 404 naming it when it is gone (evicted by the cap since the page listed it)."""
        kind = request.path_params["kind"]
        try:
            data = self.store.image(request.path_params["item"], kind)
        except ReviewStoreError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return Response(data, media_type=IMAGE_KINDS[kind][1], headers={"Cache-Control": "private, max-age=3600"})

    async def mark(self, request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        try:
            item = self.store.mark(request.path_params["item"], body.get("label"))
        except ReviewStoreError as exc:
            return PlainTextResponse(str(exc), status_code=404 if "no review item" in str(exc) else 400)
        return JSONResponse(item.to_json())

    def whatif(self, request: Request) -> Response:
        marked = self.store.items(marked=True)
        categories = {item.category for item in marked}
        current = {name: self.thresholds.scoring(name)[0] for name in categories}
        return JSONResponse({"categories": what_if(marked, current)})

    async def apply(self, request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        threshold = body.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
            return PlainTextResponse(f"threshold must be a finite number, got {threshold!r}", status_code=400)
        try:
            summary = await asyncio.to_thread(self.thresholds.apply, body.get("category"), float(threshold))
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=409)
        return JSONResponse(summary)


async def _json_body(request: Request) -> dict | Response:
    """The request's JSON object, or a 400 response saying what is wrong."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return PlainTextResponse("the body must be a JSON object", status_code=400)
    return body if isinstance(body, dict) else PlainTextResponse("the body must be a JSON object", status_code=400)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
