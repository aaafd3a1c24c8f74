import io
import sys

from mmad_edge.progress import LOG_INTERVAL_S, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_output_is_throttled(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(range(2000), "epoch 1/1")
    assert bar.mininterval == LOG_INTERVAL_S
    assert sum(1 for _ in bar) == 2000
    assert log.getvalue().count("epoch 1/1") <= 3  # opened and closed, not one line per step


def test_terminal_redraws_often_and_disabled_prints_nothing(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress_bar(range(3), "x").mininterval < 1.0
    assert list(progress_bar(range(3), "quiet", enabled=False)) == [0, 1, 2]
    assert "quiet" not in terminal.getvalue()
