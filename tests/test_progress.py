"""evertrain._progress: a bar at a terminal, periodic plain lines in a log file."""

from __future__ import annotations

import io

from evertrain._progress import PlainProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_a_plain_line_at_each_tenth_and_no_carriage_return() -> None:
    log = io.StringIO()
    bar = progress_bar(200, unit="step", desc="train", stream=log, interval_s=3600)
    assert isinstance(bar, PlainProgress)
    for _ in range(200):
        bar.update(1)
        bar.set_postfix(loss="2.3100", refresh=False)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10  # 10%, 20%, ... 100%; close adds nothing after the 100% line
    assert lines[0].startswith("train: 20/200 step (10%), ") and lines[0].endswith("loss=2.3100")
    assert lines[-1].startswith("train: 200/200 step (100%)")


def test_without_a_total_lines_come_every_interval_and_at_the_end() -> None:
    log = io.StringIO()
    bar = progress_bar(None, unit="B", unit_scale=True, desc="tokenising", stream=log, interval_s=0)
    bar.update(1500)
    bar.update(2_500_000)
    bar.close()
    assert log.getvalue().splitlines()[0].startswith("tokenising: 1.50k B, ")
    assert log.getvalue().splitlines()[1].startswith("tokenising: 2.50M B, ")
    assert len(log.getvalue().splitlines()) == 2  # nothing new to say at close


def test_setting_n_then_refresh_as_the_demo_does() -> None:
    log = io.StringIO()
    bar = progress_bar(1000, unit="tok", desc="demo", stream=log, interval_s=3600)
    bar.n = 550
    bar.refresh()
    bar.close()
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[0]]
    assert log.getvalue().startswith("demo: 550/1,000 tok (55%)")


def test_a_terminal_gets_tqdm_and_disabled_writes_nothing(capsys) -> None:
    from tqdm import tqdm

    terminal = _Terminal()
    bar = progress_bar(10, stream=terminal)
    assert isinstance(bar, tqdm)
    bar.close()
    quiet = progress_bar(10, enabled=False)
    quiet.update(5)
    quiet.close()
    assert quiet.n == 5
    assert capsys.readouterr().err == ""


def test_interval_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("EVERTRAIN_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    bar = progress_bar(1_000_000, stream=log)
    bar.update(1)
    bar.update(1)
    assert len(log.getvalue().splitlines()) == 2  # every update is due
