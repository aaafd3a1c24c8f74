"""The page in a real browser (headless Chromium through Selenium): it loads without console
errors, the live frame updates, marking frames changes the what-if, and Apply changes the running
loop's verdicts. Skipped, saying why, where Chromium, its driver or Selenium is missing."""

import json
import time

import pytest

pytest.importorskip("starlette", reason="the UI tests need the ui extra (pip install '.[ui]' from the checkout)")
from ui_fixtures import live_page, wait_for, write_deployed  # noqa: E402

GOOD_LEVEL, DEFECT_LEVEL, QUIET_LEVEL = 150, 200, 100  # scores 0.588 and 0.784 (flagged at 0.5), 0.392 (not kept)


def by_css(driver, selector):
    return driver.find_elements("css selector", selector)


def text_of(driver, selector) -> str:
    """The element's text, read in the page (no stale references while the page redraws)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                                 selector)


def severe_console_entries(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_page_loads_without_console_errors_and_the_live_frame_updates(chromium, tmp_path):
    with live_page(write_deployed(tmp_path / "export"), tmp_path / "review", [QUIET_LEVEL, GOOD_LEVEL]) as page:
        chromium.get(page.url)
        first = wait_for(lambda: chromium.execute_script(
            "const i = document.querySelector('img.frame'); return i && i.complete && i.naturalWidth > 0 && i.src;"),
            what="the first live frame")
        later = wait_for(lambda: (src := chromium.execute_script(
            "const i = document.querySelector('img.frame'); return i.complete && i.naturalWidth > 0 && i.src;"))
            and src != first and src, what="a newer live frame")
        assert int(later.rsplit("seq=", 1)[1]) > int(first.rsplit("seq=", 1)[1])
        assert chromium.execute_script("return document.querySelector('img.frame').naturalWidth") == 128
        wait_for(lambda: text_of(chromium, "#status") == "live", what="the live status")
        threshold = text_of(chromium, ".card .stats span:nth-child(3) b")
        assert threshold == "0.5000"
        assert severe_console_entries(chromium) == []


def wait_until_settled(store) -> None:
    """Until the review queue took the last flagged frames (its count unchanged over 20 looks)."""
    counts = []
    wait_for(lambda: counts.append(store.usage()["items"]) or counts[-20:].count(counts[-1]) == 20,
             what="the review queue to take the last flagged frames")


def mark_waiting_items(driver, store, label_of) -> int:
    """Mark, from the keyboard, each item the page shows until the store holds no unmarked one
    (``label_of(score)`` -> "g" or "d"); how many keys were pressed."""
    pressed = 0
    while store.usage()["unmarked"]:
        current = wait_for(lambda: "unmarked" in (text := text_of(driver, "#current p") or "") and text,
                           what="an unmarked item on the page")
        item_id, score = int(current.split(" · ")[0].lstrip("#")), float(current.split("score ")[1].split(" ")[0])
        by_css(driver, "body")[0].send_keys(label_of(score))
        pressed += 1
        wait_for(lambda: store.get(item_id).label is not None and not (
            text_of(driver, "#current p") or "").startswith(f"#{item_id} ") or not store.usage()["unmarked"],
            what=f"item {item_id} marked and the next one shown")
    return pressed


def test_marking_changes_the_what_if_and_apply_changes_the_running_loops_verdicts(chromium, tmp_path):
    export = write_deployed(tmp_path / "export")
    with live_page(export, tmp_path / "review", [GOOD_LEVEL, DEFECT_LEVEL]) as page:
        wait_for(lambda: page.store.usage()["items"] >= 4, what="four frames in the review queue")
        page.source.levels = [QUIET_LEVEL]  # nothing more to review while the person marks
        wait_until_settled(page.store)
        chromium.get(page.url)
        wait_for(lambda: by_css(chromium, "#queue li"), what="the review queue on the page")
        assert "Mark frames" in text_of(chromium, "#whatif")
        marked = mark_waiting_items(chromium, page.store, lambda score: "d" if score > 0.7 else "g")
        assert marked == page.store.usage()["marked"] >= 4  # one key per item, each item marked once
        wait_for(lambda: f"{marked} marked" in (text_of(chromium, "#whatif .card h3") or ""), what="the what-if")
        goods = sum(item.label == "good" for item in page.store.items(marked=True))
        now = text_of(chromium, "#whatif tr:nth-child(2)")
        assert now == f"now0.5000{goods}0"  # every good frame a false alarm at 0.5, no miss
        chosen = float(wait_for(lambda: text_of(chromium, "#whatif .chosen"), what="the chosen threshold"))
        assert GOOD_LEVEL / 255 < chosen < DEFECT_LEVEL / 255
        assert (text_of(chromium, "#whatif .false-alarms"), text_of(chromium, "#whatif .misses")) == ("0", "0")

        chromium.execute_script("document.querySelector('#whatif button.apply').click()")
        message = wait_for(lambda: text_of(chromium, "#whatif .message"), what="Apply's answer")
        assert "threshold 0.5 -> " in message and "judging frames from the next batch" in message
        applied = time.monotonic()
        page.source.levels = [GOOD_LEVEL, DEFECT_LEVEL]
        after = wait_for(lambda: len(seen := page.log.since(applied)) >= 10 and seen, what="frames after Apply")
        verdicts = {round(score, 3): flagged for score, flagged in after}
        assert (verdicts[0.588], verdicts[0.784], verdicts.get(0.392, False)) == (False, True, False)
        written = json.loads((export / "metadata.json").read_text())["statistics_by_artifact"]["model.fp32.onnx"]
        assert written["threshold"] == pytest.approx(chosen, rel=1e-3)
        assert (export / "metadata.json.previous.json").is_file()
        assert severe_console_entries(chromium) == []


def test_with_a_token_the_page_opens_from_the_address_with_it(chromium, tmp_path):
    token = "a-long-enough-token-for-the-page"
    with live_page(write_deployed(tmp_path / "export"), tmp_path / "review", [GOOD_LEVEL], token=token) as page:
        chromium.get(page.url)
        assert "token required" in chromium.find_element("tag name", "body").text
        chromium.get(f"{page.url}?token={token}")
        assert chromium.current_url == page.url  # the token left the address for a cookie
        wait_for(lambda: chromium.execute_script(
            "const i = document.querySelector('img.frame'); return i && i.complete && i.naturalWidth > 0;"),
            what="a live frame fetched with the cookie")



def test_an_item_evicted_while_listed_shows_as_evicted_and_leaves_the_list(chromium, tmp_path):
    """At the store's cap the camera loop evicts the oldest unmarked items, so the list the page holds
    may name an item that is gone (here: put in the page's list by hand, so no timing decides): its
    image answers 404, the page shows "evicted", fetches the list again and never asks for that image
    again; a mark of it is refused without an uncaught error. Chrome logs each refused load whatever
    the page does, so those two 404s are the only console errors allowed, in this test only."""
    with live_page(write_deployed(tmp_path / "export"), tmp_path / "review", [GOOD_LEVEL]) as page:
        wait_for(lambda: page.store.usage()["items"] >= 2, what="two frames in the review queue")
        page.source.levels = [QUIET_LEVEL]
        wait_until_settled(page.store)
        chromium.get(page.url)
        wait_for(lambda: by_css(chromium, "#queue li"), what="the review queue on the page")
        gone = 10 ** 6  # an id the store does not hold, as an evicted item's
        show_gone = ("reviewItems.unshift({...reviewItems[0], id: arguments[0], label: null}); selected = arguments[0];"
                     "renderQueue(); const drawn = document.querySelectorAll('#current .evicted').length;")
        assert chromium.execute_script(show_gone + "return drawn;", gone) == 0  # its image asked for: not known gone
        wait_for(lambda: chromium.execute_script("return evicted.has(arguments[0])", gone), what="the 404 handled")
        wait_for(lambda: not by_css(chromium, f'#queue li[data-id="{gone}"]'), what="the list fetched again")
        assert chromium.execute_script(show_gone + "mark('good'); return drawn;", gone) == 1  # evicted, not asked
        wait_for(lambda: not by_css(chromium, f'#queue li[data-id="{gone}"]'), what="the list after the refused mark")
        assert page.store.usage()["marked"] == 0
        errors = severe_console_entries(chromium)  # nothing but the two refused loads: no uncaught error
        assert sorted(entry["message"].split(" - ")[0].split("/api/")[1] for entry in errors
                      if entry["source"] == "network" and "status of 404" in entry["message"]) == sorted(
            f"review/{gone}{path}" for path in ("", "/overlay.img")) and len(errors) == 2
