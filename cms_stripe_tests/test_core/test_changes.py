"""The CMS-change sensor's decision (pure): one run over the range of changed partitions, days outside
the partitions reached through the open edges, run keys that make a change impossible to request
twice, and a cursor that never moves backwards nor past now."""

from __future__ import annotations

from datetime import UTC, datetime

from cms_stripe.core.changes import ChangedDays, decide_changed_partitions, parse_cursor
from cms_stripe.core.days import PartitionSpan

SPAN = PartitionSpan("2026-03-01", "2026-03-31")
NOW = datetime(2026, 3, 31, 15, tzinfo=UTC)
T0 = "2026-03-10T12:00:00+00:00"


def changed(*stamps: datetime, scanned: int | None = None, fresh: int | None = None, **kw) -> ChangedDays:
    days = {t.date(): t for t in sorted(stamps)}
    return ChangedDays(
        tuple(sorted(days)),
        max(stamps, default=None),
        changed_rows=len(stamps),
        scanned_rows=len(stamps) if scanned is None else scanned,
        day_newest=days,
        fresh_rows=len(stamps) if fresh is None else fresh,
        **kw,
    )


def test_nothing_updated_keeps_cursor_and_says_why():
    d = decide_changed_partitions(T0, ChangedDays((), None), SPAN, NOW)
    assert d.partition_range is None and d.cursor == T0
    assert d.skip_reason == f"no CMS row was updated since {T0}"


def test_first_tick_without_cursor():
    t = datetime(2026, 3, 5, 8, tzinfo=UTC)
    d = decide_changed_partitions(None, changed(t), SPAN, NOW)
    assert d.partition_range == ("2026-03-05", "2026-03-05")
    assert d.run_key == "cms-change:2026-03-05..2026-03-05:2026-03-05T08:00:00+00:00"
    assert d.cursor == "2026-03-05T08:00:00+00:00"


def test_many_days_are_one_range_run():
    stamps = [
        datetime(2026, 3, 12, 10, tzinfo=UTC),
        datetime(2026, 3, 11, tzinfo=UTC),
        datetime(2026, 3, 2, tzinfo=UTC),
    ]
    d = decide_changed_partitions(T0, changed(*stamps), SPAN, NOW)
    assert d.partition_keys == ["2026-03-02", "2026-03-11", "2026-03-12"]
    assert d.partition_range == ("2026-03-02", "2026-03-12")
    assert d.run_key == "cms-change:2026-03-02..2026-03-12:2026-03-12T10:00:00+00:00"


def test_write_backs_only_move_the_cursor_and_say_so():
    newest = datetime(2026, 3, 11, 9, tzinfo=UTC)
    quiet = ChangedDays((), newest, changed_rows=0, scanned_rows=40, fresh_rows=40)
    d = decide_changed_partitions(T0, quiet, SPAN, NOW)
    assert d.partition_range is None and d.cursor == newest.isoformat()
    assert d.skip_reason == (
        f"40 CMS rows were updated since {T0}, none with content that differs from what was last synced "
        "(our own write-backs, or edits already synced); cursor moved on"
    )


def test_rows_seen_again_in_the_lookback_are_not_reported_again():
    # The look-back re-reads 5 rows already reported; none is newer than the cursor.
    seen = ChangedDays((), parse_cursor(T0), changed_rows=0, scanned_rows=5, fresh_rows=0)
    d = decide_changed_partitions(T0, seen, SPAN, NOW)
    assert d.skip_reason == f"no CMS row was updated since {T0}"


def test_cursor_never_moves_backwards():
    older = datetime(2026, 3, 1, tzinfo=UTC)
    d = decide_changed_partitions(T0, changed(older), SPAN, NOW)
    assert parse_cursor(d.cursor) == parse_cursor(T0)


def test_a_future_stamp_syncs_in_the_last_partition_without_pushing_the_cursor_past_now():
    future = datetime(2099, 1, 1, tzinfo=UTC)
    d = decide_changed_partitions(T0, changed(future), SPAN, NOW)
    assert d.partition_range == ("2026-03-31", "2026-03-31")
    assert d.run_key == "cms-change:2026-03-31..2026-03-31:2099-01-01T00:00:00+00:00"
    assert d.cursor == NOW.isoformat(), "an edit made tomorrow at 10:00 must still be seen"


def test_days_before_the_first_partition_go_to_the_first():
    old = datetime(2016, 5, 4, tzinfo=UTC)
    d = decide_changed_partitions(None, changed(old, datetime(2026, 3, 3, tzinfo=UTC)), SPAN, NOW)
    assert d.partition_range == ("2026-03-01", "2026-03-03")


def test_undated_changes_go_to_the_first_partition_named_by_their_digest():
    quiet = ChangedDays((), None, undated_changes=2, undated_digest="abc123", scanned_rows=2)
    d = decide_changed_partitions(T0, quiet, SPAN, NOW)
    assert d.partition_range == ("2026-03-01", "2026-03-01")
    assert d.run_key == "cms-change:2026-03-01..2026-03-01:undated+undated:abc123"


def test_same_change_gives_same_run_key_and_a_later_edit_a_new_one():
    t = datetime(2026, 3, 11, 9, tzinfo=UTC)
    first = decide_changed_partitions(T0, changed(t), SPAN, NOW)
    again = decide_changed_partitions(first.cursor, changed(t), SPAN, NOW)  # the look-back sees it again
    later = decide_changed_partitions(first.cursor, changed(datetime(2026, 3, 11, 10, tzinfo=UTC)), SPAN, NOW)
    assert first.run_key == again.run_key
    assert later.run_key != first.run_key
