"""The CMS-change sensor's decision (pure): which partitions to run, the run keys that make a change
impossible to request twice, and a cursor that never moves backwards."""

from __future__ import annotations

from datetime import UTC, date, datetime

from cms_stripe.core.changes import decide_changed_partitions, parse_cursor

KEYS = {f"2026-03-{d:02d}" for d in range(1, 32)}
T0 = "2026-03-10T12:00:00+00:00"


def test_nothing_changed_keeps_cursor_and_says_why():
    d = decide_changed_partitions(T0, [], None, KEYS)
    assert d.partition_keys == [] and d.cursor == T0
    assert "no CMS row changed since" in (d.skip_reason or "")


def test_first_tick_without_cursor():
    d = decide_changed_partitions(None, [date(2026, 3, 5)], datetime(2026, 3, 5, 8, tzinfo=UTC), KEYS, changed_rows=3)
    assert d.partition_keys == ["2026-03-05"]
    assert d.cursor == "2026-03-05T08:00:00+00:00"


def test_one_day():
    newest = datetime(2026, 3, 11, 9, 30, tzinfo=UTC)
    d = decide_changed_partitions(T0, [date(2026, 3, 11)], newest, KEYS, changed_rows=1, scanned_rows=1)
    assert d.partition_keys == ["2026-03-11"]
    assert d.run_keys == {"2026-03-11": f"cms-change:2026-03-11:{newest.isoformat()}"}
    assert d.skip_reason is None and d.cursor == newest.isoformat()


def test_many_days_one_run_each_deduplicated_and_sorted():
    days = [date(2026, 3, 12), date(2026, 3, 11), date(2026, 3, 12), date(2026, 3, 2)]
    d = decide_changed_partitions(T0, days, datetime(2026, 3, 12, 10, tzinfo=UTC), KEYS, changed_rows=4)
    assert d.partition_keys == ["2026-03-02", "2026-03-11", "2026-03-12"]
    assert len(set(d.run_keys.values())) == 3


def test_write_back_only_moves_cursor_without_runs():
    newest = datetime(2026, 3, 11, 9, tzinfo=UTC)
    d = decide_changed_partitions(T0, [], newest, KEYS, changed_rows=0, scanned_rows=40)
    assert d.partition_keys == []
    assert d.cursor == newest.isoformat()
    assert "none changed content" in (d.skip_reason or "")


def test_cursor_never_moves_backwards():
    older = datetime(2026, 3, 1, tzinfo=UTC)
    d = decide_changed_partitions(T0, [date(2026, 3, 1)], older, KEYS, changed_rows=1)
    assert parse_cursor(d.cursor) == parse_cursor(T0)
    d2 = decide_changed_partitions(T0, [], None, KEYS)
    assert d2.cursor == T0


def test_same_change_gives_same_run_key_and_a_later_edit_a_new_one():
    first = decide_changed_partitions(T0, [date(2026, 3, 11)], datetime(2026, 3, 11, 9, tzinfo=UTC), KEYS)
    again = decide_changed_partitions(T0, [date(2026, 3, 11)], datetime(2026, 3, 11, 9, tzinfo=UTC), KEYS)
    later = decide_changed_partitions(first.cursor, [date(2026, 3, 11)], datetime(2026, 3, 11, 10, tzinfo=UTC), KEYS)
    assert first.run_keys == again.run_keys
    assert later.run_keys["2026-03-11"] != first.run_keys["2026-03-11"]


def test_days_outside_partitions_are_skipped_with_reason():
    d = decide_changed_partitions(T0, [date(2030, 1, 1)], datetime(2030, 1, 1, tzinfo=UTC), KEYS, changed_rows=1)
    assert d.partition_keys == []
    assert "outside the partitions" in (d.skip_reason or "")


def test_a_change_seen_again_while_its_run_waits_keeps_its_run_key():
    # Tick 1 sees an edit on the 11th; before its run syncs it, a row of the 12th changes and moves
    # the cursor. Tick 2's lookback sees the 11th's unsynced edit again: same key, so no second run.
    edit_11 = datetime(2026, 3, 11, 9, tzinfo=UTC)
    edit_12 = datetime(2026, 3, 12, 8, tzinfo=UTC)
    first = decide_changed_partitions(T0, [date(2026, 3, 11)], edit_11, KEYS, day_newest={date(2026, 3, 11): edit_11})
    second = decide_changed_partitions(
        first.cursor,
        [date(2026, 3, 11), date(2026, 3, 12)],
        edit_12,
        KEYS,
        day_newest={date(2026, 3, 11): edit_11, date(2026, 3, 12): edit_12},
    )
    assert second.run_keys["2026-03-11"] == first.run_keys["2026-03-11"]
    assert second.run_keys["2026-03-12"] == f"cms-change:2026-03-12:{edit_12.isoformat()}"
