"""`serve --ui`: every frame of every Triton execution reaches the page, a category standing for a
source, with the category's drift statistic (no Triton needed: the handler is called directly)."""

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the UI tests need the ui extra (pip install '.[ui]' from the checkout)")
from ui_fixtures import write_deployed  # noqa: E402

from mmad_edge.runtime import Detector  # noqa: E402
from mmad_edge.runtime.serving.handler import InferenceHandler  # noqa: E402
from mmad_edge.runtime.serving.options import ServeOptions  # noqa: E402
from mmad_edge.runtime.serving.watch import ServeWatch  # noqa: E402
from mmad_edge.runtime.ui.options import PageOptions  # noqa: E402
from mmad_edge.runtime.ui.page import LivePage  # noqa: E402


def test_the_handler_hands_every_frame_to_the_page_per_category(tmp_path):
    frames = np.stack([np.full((40, 40, 3), level, np.uint8) for level in (100, 200, 100, 200, 200)])
    options = ServeOptions(drift_window=4, page=PageOptions(ui="127.0.0.1:0", review_dir=str(tmp_path / "review")))
    with Detector.load(write_deployed(tmp_path / "export"), "onnxruntime") as detector:
        watch = ServeWatch(detector.info.raw.get("statistics"), options)
        page = LivePage.open(options.page, [detector], "mmad_edge", drift_tolerance=options.drift_tolerance)
        try:
            handler = InferenceHandler(detector, watch, page)
            handler([{"image": frames[:2]}, {"image": frames[2:]}])
            [source] = page.state.snapshot()["sources"]
            assert (source["name"], source["category"], source["frames"], source["anomalies"]) == (
                "pooled scores (no category)", None, 5, 3)
            assert source["score"] == pytest.approx(200 / 255, abs=1e-5) and source["threshold"] == 0.5
            assert source["drift"]["points"][-1][1] == pytest.approx(watch.summary()["drift"]["pooled"]["statistic"])
        finally:
            page.close()
