"""`run --ui --shadow`: the candidate's disagreements reach the review queue with their reason, and
the page shows the agreement per source."""

import pytest

pytest.importorskip("starlette", reason="the UI tests need the ui extra (pip install '.[ui]' from the checkout)")
from ui_fixtures import live_page, page_state, wait_for, write_deployed  # noqa: E402


def test_shadow_disagreements_go_to_the_review_queue_and_the_page_shows_agreement(tmp_path):
    deployed = write_deployed(tmp_path / "deployed", threshold=0.5)
    candidate = write_deployed(tmp_path / "candidate", threshold=0.7)  # passes what the deployed one flags
    with live_page(deployed, tmp_path / "review", [150, 100], shadow=candidate) as page:  # 0.588 and 0.392
        agreement = wait_for(lambda: ((page_state(page.url) or {}).get("shadow") or {}).get("camera-1", {})
                             .get("compared", 0) >= 6 and page_state(page.url)["shadow"]["camera-1"],
                             what="six frames compared on the page")
        reasons = wait_for(lambda: [item.reason for item in page.store.items() if item.reason.startswith("shadow")],
                           what="a disagreement in the review queue")
    assert 0 < agreement["agreed"] < agreement["compared"]  # the 100 frames agree, the 150 ones do not
    assert agreement["disagreed"] == agreement["compared"] - agreement["agreed"]
    assert set(reasons) == {"shadow: candidate passes it (score 0.5882)"}


def test_a_review_goes_to_the_source_of_that_name_and_an_unknown_name_is_said_once(capsys):
    import numpy as np

    from mmad_edge.runtime.result import Result
    from mmad_edge.runtime.ui.page import LivePage
    from mmad_edge.runtime.ui.state import LiveState

    page = LivePage(None, LiveState(), None, None)
    slots = {name: page.slot(object(), name, None) for name in ("a", "b", "c")}
    frame, result = np.zeros((4, 4, 3), np.uint8), Result(0.6, 0.55, True, 0.5, np.zeros((4, 4), np.float32))
    page.review("b", frame, result, "shadow: candidate passes it")
    taken = page.state.take_review(0.0)
    assert (taken.source, taken.reason) == (slots["b"], "shadow: candidate passes it")
    for _ in range(2):
        page.review("ghost", frame, result, "shadow")
    assert page.state.take_review(0.0) is None
    assert capsys.readouterr().err.count("no source called 'ghost' is on the page") == 1
