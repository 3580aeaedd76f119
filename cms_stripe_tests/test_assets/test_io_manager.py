"""The frames IO manager: a range output is split into one file per day, and the next steps of the
same in-process run get exactly what those files hold (handed over in memory, not re-read).

The frame is written by hand with rows on two of four days, an undated row, one older than the range
and one stamped after it (open edges: the first and the last day). The expected days and row order
are spelled out here, not derived from the IO manager."""

from __future__ import annotations

import pickle
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from cms_stripe import io_managers
from cms_stripe.io_managers import DailyFrameIOManager

DAYS = ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
PARTITIONS = dg.DailyPartitionsDefinition(start_date=DAYS[0], end_date="2026-03-06")
FRAME = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d", "e", "f"],
        "updated_at": pd.to_datetime(
            ["2026-03-04 10:00", "2026-03-02 09:00", None, "2026-03-04 08:00", "2026-03-09 00:00", "2020-01-01 00:00"],
            utc=True,
        ),
        "metadata": [{"k": "a"}, {}, {}, {"k": "d"}, {}, {}],
    }
)
# Day by day, then in output order; undated and older rows on the first day, the future one on the last.
BY_DAY = {"2026-03-02": ["b", "c", "f"], "2026-03-03": [], "2026-03-04": ["a", "d"], "2026-03-05": ["e"]}
RANGE_ORDER = ["b", "c", "f", "a", "d", "e"]
RANGE = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}


def _snapshot(frame: pd.DataFrame) -> pd.DataFrame:
    # pandas' deep copy shares the dicts in object cells: a pickle round trip does not.
    return pickle.loads(pickle.dumps(frame))  # noqa: S301 - our own bytes


def _graph(seen: dict[str, Any]) -> list[dg.AssetsDefinition]:
    policy = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=PARTITIONS, backfill_policy=policy, io_manager_key="frames")
    def frames() -> pd.DataFrame:
        return FRAME.copy(deep=True)

    @dg.asset(partitions_def=PARTITIONS, backfill_policy=policy, io_manager_key="frames")
    def first_reader(frames: pd.DataFrame) -> pd.DataFrame:
        seen["first"] = _snapshot(frames)
        # A step that changes its input in place must not change what a later step of the run gets.
        frames.loc[0, "id"] = "changed"
        frames.loc[3, "metadata"]["k"] = "changed"
        return frames

    @dg.asset(partitions_def=PARTITIONS, backfill_policy=policy, deps=[first_reader])
    def second_reader(frames: pd.DataFrame) -> None:
        seen["second"] = _snapshot(frames)

    return [frames, first_reader, second_reader]


@pytest.fixture
def frames_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CMS_STRIPE_FRAMES_DIR", str(tmp_path / "frames"))
    return tmp_path / "frames"


def _load(instance: dg.DagsterInstance, keys: list[str]) -> pd.DataFrame:
    """What a step of another process (another run, the multiprocess executor) reads: files only."""
    context = dg.build_input_context(
        asset_key=dg.AssetKey("frames"),
        instance=instance,
        asset_partitions_def=PARTITIONS,
        asset_partition_key_range=dg.PartitionKeyRange(keys[0], keys[-1]),
    )
    return DailyFrameIOManager().load_input(context)


class _CountingPickle:
    """The pickle module as the IO manager sees it, counting the frames read from files."""

    def __init__(self) -> None:
        self.file_loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(pickle, name)

    def load(self, fh: Any) -> Any:
        self.file_loads += 1
        return pickle.load(fh)  # noqa: S301 - the test's own files


@pytest.mark.parametrize("budget", [io_managers.HANDOFF_BUDGET_BYTES, 0])
def test_range_output_split_by_day_and_handed_over_as_the_files_hold_it(
    frames_dir: Any, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _CountingPickle()
    monkeypatch.setattr(io_managers, "pickle", counting)
    monkeypatch.setattr(io_managers, "HANDOFF_BUDGET_BYTES", budget)
    seen: dict[str, Any] = {}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            _graph(seen), instance=instance, resources={"frames": DailyFrameIOManager()}, tags=RANGE
        )
        assert result.success

        for day, ids in BY_DAY.items():
            assert list(_load(instance, [day])["id"]) == ids, day
        # Within the run the two readers got the frame in memory; over the budget, from the 4 files each.
        assert counting.file_loads == (0 if budget else 8) + len(BY_DAY)
        from_files = _load(instance, DAYS)

    assert list(from_files["id"]) == RANGE_ORDER
    # In memory, the same frame as the files give, index, dtypes and values alike.
    pd.testing.assert_frame_equal(seen["first"], from_files)
    # The first reader's in-place changes reached neither the second reader nor the files.
    pd.testing.assert_frame_equal(seen["second"], from_files)
    assert seen["second"].loc[3, "metadata"] == {"k": "a"}


def test_empty_range_output_gives_an_empty_frame_with_its_columns(frames_dir: Any) -> None:
    @dg.asset(partitions_def=PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), io_manager_key="frames")
    def frames() -> pd.DataFrame:
        return FRAME.iloc[:0]

    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [frames], instance=instance, resources={"frames": DailyFrameIOManager()}, tags=RANGE
        ).success
        for day in DAYS:
            assert (frames_dir / "frames" / "frames" / f"{day}.pkl").is_file()
        loaded = _load(instance, DAYS)
    assert list(loaded.columns) == ["id", "updated_at", "metadata"]
    assert len(loaded) == 0
