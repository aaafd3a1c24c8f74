"""The self-test `serve` runs before it says ready: one frame through its own HTTP endpoint.

A serving stack can start, report healthy and count requests as served while every answer is
wrong (nvidia-pytriton 0.5.7 under numpy 2 returned empty tensors: clients failed with ``cannot
reshape array of size 0``). So the server's answer to one frame is compared with the in-process
Detector's on the same frame; a mismatch or a failed request stops `serve` with one line naming
the versions that served it. The request carries the ``SELF_TEST`` parameter so the handler keeps
it out of the counters and the drift watch.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

from ..artifact.contract import CATEGORY_INPUT, INPUT_NAME, IS_ANOMALY, OUTPUT_NAMES, SCORE_NORMALIZED, SERVING_MODEL
from ..errors import BackendUnavailableError, one_line
from ..result import Result

SELF_TEST = "mmad_edge_self_test"
ACCESS_HEADER = "triton-access-token"  # the header Triton's restricted APIs check (PyTriton's name)
MAP_NAME, SCORE_NAME = OUTPUT_NAMES
REINSTALL = 'reinstall with pip install -c constraints-cpu.txt -e ".[serve]"'  # the versions serve supports
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}  # the same Detector on the same frame: equal up to float32 noise


def self_test_frame(image_size: tuple[int, int]) -> np.ndarray:
    """One seeded BGR frame, not at the model size, so the server's resize is part of the test."""
    height, width = image_size
    return np.random.default_rng(0).integers(0, 256, (1, height + 7, width + 5, 3), dtype=np.uint8)


def versions() -> str:
    """The packages a wrong answer usually comes from."""
    found = []
    for name in ("nvidia-pytriton", "numpy", "tritonclient"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    return ", ".join(found)


def mismatch(answer: Any, expected: Result) -> str | None:
    """What differs between the server's answer and the in-process result (None: nothing)."""
    got = {name: answer.as_numpy(name) for name in (SCORE_NAME, SCORE_NORMALIZED, IS_ANOMALY, MAP_NAME)}
    if any(value is None for value in got.values()):
        return f"outputs {', '.join(name for name, value in got.items() if value is None)} are missing"
    wanted = {SCORE_NAME: [expected.score], IS_ANOMALY: [bool(expected.is_anomaly)],
              SCORE_NORMALIZED: [np.nan if expected.score_normalized is None else expected.score_normalized],
              MAP_NAME: expected.anomaly_map[None]}
    for name, value in wanted.items():
        value = np.asarray(value)
        if got[name].size != value.size:
            return f"{name} has {got[name].size} values, expected {value.size}"
        if not np.allclose(got[name].reshape(value.shape), value, equal_nan=True, **TOLERANCE):
            shown = got[name].reshape(-1)[0] if value.size == 1 else "a different map"
            return f"{name} is {shown}, expected {value.reshape(-1)[0] if value.size == 1 else 'the in-process map'}"
    return None


def rejection_problem(client: Any, image: Any, headers: dict[str, str]) -> str | None:
    """What is wrong with how the server answers a bad request (None: a one-line 400, as meant)."""
    from tritonclient.utils import InferenceServerException

    name = http_category(SELF_TEST)
    try:
        client.infer(SERVING_MODEL, [image, name], parameters={SELF_TEST: True}, headers=headers)
    except InferenceServerException as exc:
        message = str(exc.message() or "")
        if str(exc.status()) != "400" or "\n" in message.strip() or "unknown category" not in message:
            return (f"a request with an unknown category got HTTP {exc.status()} "
                    f"({(message.strip().splitlines() or ['no message'])[0][:120]}), not one line with 400")
        return None
    return "a request with an unknown category was served"


def http_category(name: str) -> Any:
    """The optional category input of one request, for the HTTP client."""
    import tritonclient.http as http

    category = http.InferInput(CATEGORY_INPUT, [1, 1], "BYTES")
    category.set_data_from_numpy(np.array([[name.encode()]], dtype=np.object_))
    return category


def run_self_test(address: str, frame: np.ndarray, expected: Result, token: str | None = None) -> None:
    """Send ``frame`` to the model at ``address`` (HOST:PORT, HTTP), then the same frame with an
    unknown category; BackendUnavailableError in one line when the first answer differs from
    ``expected`` or the second is not a one-line 400."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    headers = {} if token is None else {ACCESS_HEADER: token}
    image = http.InferInput(INPUT_NAME, list(frame.shape), "UINT8")
    image.set_data_from_numpy(frame)
    client = http.InferenceServerClient(address)
    try:
        answer = client.infer(SERVING_MODEL, [image], parameters={SELF_TEST: True}, headers=headers)
        problem = mismatch(answer, expected) or rejection_problem(client, image, headers)
    except (InferenceServerException, ValueError, OSError) as exc:
        problem = f"the request failed ({one_line(exc)})"
    finally:
        client.close()
    if problem is not None:
        raise BackendUnavailableError(
            f"serve's self-test through http://{address} failed: {problem}; the serving stack does not pass "
            f"answers through ({versions()}): {REINSTALL}")
