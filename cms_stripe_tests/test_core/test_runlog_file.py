"""The daily log file stays open between lines: each line must still be on disk as soon as it is
appended (a killed process loses none), and a file moved or deleted meanwhile (rotation, cleanup)
must not swallow later lines: they go to a new file at the day's path."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cms_stripe.core import runlog

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NEXT_DAY = datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC)
RUN = "0123456789abcdef"


LINE = re.compile(r"^2026-03-0\dT\S+Z INFO +run=01234567 note +(.*)$")


def lines(path) -> list[str]:
    """The texts of the file's lines (each checked to carry its stamp, level, run and kind)."""
    out = []
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        assert match, line
        out.append(match.group(1))
    return out


def test_lines_are_on_disk_at_once_and_follow_a_moved_or_deleted_file(tmp_path):
    logs = tmp_path / "logs"
    path = logs / "migration-2026-03-02.log"
    runlog.append_line(logs, RUN, AT, "INFO", "note", "one")
    assert lines(path) == ["one"]
    runlog.append_line(logs, RUN, AT, "INFO", "note", "two")
    assert lines(path) == ["one", "two"]

    rotated = tmp_path / "rotated.log"
    path.rename(rotated)
    runlog.append_line(logs, RUN, AT, "INFO", "note", "three")
    assert lines(rotated) == ["one", "two"]
    assert lines(path) == ["three"]

    path.unlink()
    runlog.append_line(logs, RUN, AT, "INFO", "note", "four")
    assert lines(path) == ["four"]

    # The next day's file, another folder: each line where its day and folder say.
    runlog.append_line(logs, RUN, NEXT_DAY, "INFO", "note", "five")
    other = tmp_path / "other"
    runlog.append_line(other, RUN, AT, "INFO", "note", "six")
    runlog.append_line(logs, RUN, AT, "INFO", "note", "seven")
    assert lines(logs / "migration-2026-03-03.log") == ["five"]
    assert lines(other / "migration-2026-03-02.log") == ["six"]
    assert lines(path) == ["four", "seven"]


def test_every_line_is_scrubbed(tmp_path, monkeypatch):
    key = "sk_test_" + "Q" * 30
    monkeypatch.setenv("STRIPE_SECRET_KEY", key)
    runlog.append_line(tmp_path, RUN, AT, "INFO", "note", f"retrying with {key}\nsecond line")
    (text,) = lines(tmp_path / "migration-2026-03-02.log")
    assert key not in text and text.endswith(" second line")
