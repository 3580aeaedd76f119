"""Per-partition metadata of a range run is recorded in one step through Dagster's accumulator
(`assets.common._add_partitions_metadata`, private API), or by the public `add_asset_metadata` call per
partition when that is unavailable. Both must leave each partition exactly the metadata written out
below: its own numbers over the empty defaults, nothing of another day."""

from typing import Any

import dagster as dg
import pytest

from cms_stripe.assets import common
from cms_stripe.assets.common import partition_metadata_result

DAYS = dg.DailyPartitionsDefinition(start_date="2026-05-01", end_date="2026-05-05")
RANGE = {"dagster/asset_partition_range_start": "2026-05-01", "dagster/asset_partition_range_end": "2026-05-04"}
EXPECTED = {
    "2026-05-01": {"rows": 3, "newest": "a", "empty_day": False},
    "2026-05-02": {"rows": 0, "newest": "", "empty_day": True},
    "2026-05-03": {"rows": 1, "newest": "c", "empty_day": False},
    "2026-05-04": {"rows": 0, "newest": "", "empty_day": True},
}


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def days(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    own = partition_metadata_result(
        context,
        {
            "2026-05-01": {"rows": 3, "newest": "a", "empty_day": False},
            "2026-05-03": {"rows": 1, "newest": "c", "empty_day": False},
        },
        {"rows": 0, "newest": "", "empty_day": True},
    )
    return dg.MaterializeResult(metadata=own)


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    out = {}
    for mat in result.asset_materializations_for_node("days"):
        out[str(mat.partition)] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


@pytest.mark.parametrize("path", ["accumulator", "public calls"])
def test_each_partition_gets_its_own_metadata(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[bool] = []
    one_step = common._add_partitions_metadata

    def spy(context: Any, own: Any) -> bool:
        used.append(path == "accumulator" and one_step(context, own))
        return used[-1]

    monkeypatch.setattr(common, "_add_partitions_metadata", spy)
    result = dg.materialize([days], tags=RANGE)
    assert result.success
    assert _metadata(result) == EXPECTED
    # The path under test is the one taken (the accumulator is there in this Dagster).
    assert used == [path == "accumulator"]
