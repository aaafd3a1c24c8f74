"""A bad request is answered 400 on its own: one line to its client, the rest of its batch served.

PyTriton (0.7) has no per-request error: an exception from the inference callable fails every
request of the execution, as Triton's INTERNAL error (HTTP 500) carrying a formatted traceback.
So the handler never raises for a client's mistake: it answers that request with the single
output ``REJECTED`` holding the message, and runs the other requests of the batch as usual.
``teach_proxy_model`` appends a few lines to the proxy model PyTriton writes into Triton's model
store (its ``model.py``, run by Triton's Python backend), so that such a response leaves Triton
as an INVALID_ARG error: HTTP 400 and gRPC INVALID_ARGUMENT, with our line as the message.
``serve``'s self-test sends one bad request through the server to see that this still holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError
from .selftest import REINSTALL

REJECTED = "mmad_edge_rejected"
# What PyTriton's proxy model calls to turn one request's outputs into Triton's response.
PROXY_HOOK = "_wrap_response"
PROXY_PATCH = f'''

# Appended by mmad-edge serve (runtime/serving/rejection.py): a response holding only
# {REJECTED!r} is a rejected request; it leaves Triton as INVALID_ARG (HTTP 400) with that line.
def _mmad_edge_rejecting(wrap):
    def wrapped(response, requested_outputs_names, model_outputs_dict):
        data = response.data if response.data is not None else {{}}
        if {REJECTED!r} in data:
            message = bytes(data[{REJECTED!r}].reshape(-1)[0]).decode("utf-8", "replace")
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
        return wrap(response, requested_outputs_names, model_outputs_dict)
    return wrapped


{PROXY_HOOK} = _mmad_edge_rejecting({PROXY_HOOK})
'''


def rejected(message: str) -> dict[str, np.ndarray]:
    """The outputs of a rejected request: its one-line message, nothing else."""
    return {REJECTED: np.array([message.encode("utf-8")], dtype=np.bytes_)}


def teach_proxy_model(model_store: Path, model_name: str, version: int = 1) -> None:
    """Append the rejection hook to PyTriton's proxy model of ``model_name`` in ``model_store``
    (written by ``Triton.bind`` with a local model store, read when tritonserver starts)."""
    path = Path(model_store) / model_name / str(version) / "model.py"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BackendUnavailableError(f"PyTriton wrote no proxy model at {path} ({exc.strerror}); this "
                                      f"nvidia-pytriton is not one serve supports: {REINSTALL}") from None
    if f"def {PROXY_HOOK}(" not in text:
        raise BackendUnavailableError(f"PyTriton's proxy model {path} has no {PROXY_HOOK}; this nvidia-pytriton "
                                      f"is not one serve supports: {REINSTALL}")
    path.write_text(text + PROXY_PATCH, encoding="utf-8")
