"""The page's HTTP face: the token on every route, cross-site writes refused, no path to the file
system, the bind rules; and a real server refusing an open bind without a token."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="the UI tests need the ui extra (pip install '.[ui]' from the checkout)")
from starlette.testclient import TestClient  # noqa: E402
from ui_fixtures import write_deployed  # noqa: E402

from mmad_edge.export.threshold_apply import MetadataThresholds  # noqa: E402
from mmad_edge.runtime import Detector  # noqa: E402
from mmad_edge.runtime.ui.app import UiApp  # noqa: E402
from mmad_edge.runtime.ui.review_store import ReviewStore  # noqa: E402
from mmad_edge.runtime.ui.security import (  # noqa: E402
    COOKIE,
    CSRF_HEADER,
    TOKEN_ENV,
    Guard,
    UiConfigError,
    parse_bind,
    resolve_token,
)
from mmad_edge.runtime.ui.state import LiveState  # noqa: E402

TOKEN = "correct-horse-battery-staple"
ORIGIN = "http://127.0.0.1:8080"


@pytest.fixture
def parts(tmp_path):
    with Detector.load(write_deployed(tmp_path / "export"), "onnxruntime") as detector:
        state, store = LiveState(), ReviewStore(tmp_path / "review")
        index = state.add_source("cam", None)
        frame = np.full((48, 64, 3), 200, np.uint8)
        state.offer(index, frame, detector(frame))
        store.add(frame, frame, source="cam", category=None, score=0.78, threshold=0.5, reason="flagged")
        yield state, store, MetadataThresholds([detector])
        store.close()


def client(parts, token=None) -> tuple[TestClient, Guard]:
    guard = Guard(token, 8080)
    return TestClient(UiApp(*parts, guard).asgi, base_url=ORIGIN, follow_redirects=False), guard


ROUTES = ["/", "/static/app.js", "/api/state", "/api/frame/0.jpg", "/api/review", "/api/review/1/overlay.img",
          "/api/review/1/frame.img", "/api/whatif"]


def test_every_route_needs_the_token_images_included(parts):
    http, guard = client(parts, TOKEN)
    for route in ROUTES:
        assert http.get(route).status_code == 401, route
        assert http.get(route, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401, route
        assert http.get(route, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, route
    assert http.post("/api/review/1", json={"label": "good"}, headers={CSRF_HEADER: guard.csrf}).status_code == 401


def test_the_token_in_the_address_becomes_a_strict_cookie(parts):
    http, _ = client(parts, TOKEN)
    answer = http.get(f"/?token={TOKEN}")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert http.get("/api/review/1/overlay.img").status_code == 200  # the client now sends the cookie


def test_cross_site_writes_are_refused(parts):
    http, guard = client(parts)
    mark = "/api/review/1"
    assert http.post(mark, json={"label": "good"}).status_code == 403  # a form post from elsewhere: no header
    assert http.post(mark, json={"label": "good"}, headers={CSRF_HEADER: "guessed"}).status_code == 403
    assert http.post(mark, json={"label": "good"},
                     headers={CSRF_HEADER: guard.csrf, "Origin": "http://evil.example"}).status_code == 403
    assert parts[1].get(1).label is None
    same = http.post(mark, json={"label": "good"}, headers={CSRF_HEADER: guard.csrf, "Origin": ORIGIN})
    assert same.status_code == 200 and same.json()["label"] == "good"
    assert guard.csrf in http.get("/").text  # the page carries the value for its own requests


def test_without_a_token_only_requests_addressed_to_this_machine_pass(parts):
    http, _ = client(parts)
    assert http.get("/api/state").status_code == 200
    assert http.get("/api/state", headers={"Host": "rebound.example:8080"}).status_code == 421


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/%2e%2e%2findex.sqlite", "/static/index.sqlite",
                                  "/api/review/..%2F..%2Fetc%2Fpasswd/frame.img", "/api/review/1/..%2Findex.img",
                                  "/api/review/1/index.sqlite", "/api/review/999/frame.img", "/api/frame/7.jpg",
                                  "/api/frame/..%2F0.jpg"])
def test_no_request_path_reaches_the_file_system(parts, path):
    http, _ = client(parts)
    answer = http.get(path)
    assert answer.status_code == 404, path
    assert b"SQLite" not in answer.content and b"root:" not in answer.content


def test_an_item_evicted_after_the_page_listed_it_answers_404_in_one_line_never_500(parts, tmp_path):
    state, _, thresholds = parts
    store = ReviewStore(tmp_path / "capped", max_items=1)
    frames = [np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8) for seed in range(2)]
    first = store.add(frames[0], frames[0], source="cam", category=None, score=0.7, threshold=0.5, reason="flagged")
    http, _ = client((state, store, thresholds))
    assert [item["id"] for item in http.get("/api/review").json()["items"]] == [first]  # the page lists it
    second = store.add(frames[1], frames[1], source="cam", category=None, score=0.7, threshold=0.5, reason="flagged")
    gone = "no review item {}; it may have been evicted to keep the store's cap"
    for kind in ("overlay", "frame"):  # the camera loop's next add evicted it: the page's request comes late
        answer = http.get(f"/api/review/{first}/{kind}.img")
        assert (answer.status_code, answer.text) == (404, gone.format(first))
    frame = http.get(f"/api/review/{second}/frame.img")
    assert frame.headers["content-type"] == "image/png"
    assert np.array_equal(cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR), frames[1])
    assert http.get(f"/api/review/{second}/overlay.img").headers["content-type"] == "image/jpeg"
    (store.folder / f"{second}.jpg").unlink()  # what another process's eviction or sweep did: 500 before the fix
    answer = http.get(f"/api/review/{second}/overlay.img")
    assert (answer.status_code, answer.text) == (404, gone.format(second))
    store.close()


def test_state_and_whatif_answer_with_numbers(parts):
    http, guard = client(parts)
    state = http.get("/api/state").json()
    [source] = state["sources"]
    assert (source["frames"], source["anomalies"], source["is_anomaly"], source["threshold"]) == (1, 1, True, 0.5)
    assert source["score"] == pytest.approx(200 / 255, abs=1e-5)
    assert state["review"]["items"] == 1
    assert http.get("/api/frame/0.jpg").content[:2] == b"\xff\xd8"  # a JPEG
    assert http.get("/api/whatif").json() == {"categories": []}
    http.post("/api/review/1", json={"label": "good"}, headers={CSRF_HEADER: guard.csrf})
    [entry] = http.get("/api/whatif").json()["categories"]
    assert entry["current"] == {"threshold": 0.5, "false_alarms": 1, "misses": 0}
    bad = http.post("/api/apply", json={"threshold": "high"}, headers={CSRF_HEADER: guard.csrf})
    assert bad.status_code == 400 and "threshold must be a finite number" in bad.text


def test_bind_rules():
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    with pytest.raises(UiConfigError, match="expected PORT or HOST:PORT"):
        parse_bind("localhost:http")
    assert resolve_token("127.0.0.1", environ={}) is None
    assert resolve_token("0.0.0.0", environ={TOKEN_ENV: TOKEN}) == TOKEN
    with pytest.raises(UiConfigError, match=f"needs a token: set {TOKEN_ENV} or pass --ui-token-file"):
        resolve_token("0.0.0.0", environ={})
    with pytest.raises(UiConfigError, match="use at least 16"):
        resolve_token("0.0.0.0", environ={TOKEN_ENV: "short"})


def test_an_open_bind_without_a_token_refuses_to_start_in_one_line(tmp_path):
    code = ("from mmad_edge.runtime.ui.security import UiConfigError\n"
            "from mmad_edge.runtime.ui.server import UiServer\n"
            "try:\n    UiServer('0.0.0.0', 0, None, None, None, None).start()\n"
            "except UiConfigError as exc:\n    raise SystemExit(f'mmad-edge: {exc}')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"mmad-edge: --ui on 0.0.0.0 listens beyond this machine and needs a token: set {TOKEN_ENV} or pass "
        "--ui-token-file FILE (or listen on 127.0.0.1)"]
