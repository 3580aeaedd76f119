"""The embedded instance's batching SQLite storage (`cms_stripe.instance_storage`): every event of a
range run is stored, and what the UI and the CLI read back (materialized, failed and in-progress
partitions, each partition's latest materialization, planned asset checks) is what Dagster's own
SQLite storage gives for the same runs."""

import os
import pathlib
import sqlite3.dbapi2
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from cms_stripe.cli import _embedded_home
from cms_stripe.instance_storage import BatchingSqliteEventLogStorage

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")
KEYS = [f"2026-01-{d:02d}" for d in range(1, 11)]  # the ten partitions, written out
RANGE_TAGS = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-10"}
FAIL = {"fail": False}  # flipped by a test: the upstream asset raises


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def upstream(context: dg.AssetExecutionContext) -> None:
    if FAIL["fail"]:
        raise RuntimeError("upstream fails")
    for key in context.partition_keys:
        context.add_asset_metadata({"day": key}, partition_key=key)


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[upstream])
def downstream(context: dg.AssetExecutionContext) -> None:
    for key in context.partition_keys:
        context.add_asset_metadata({"day": key}, partition_key=key)


@dg.asset_check(asset=downstream)
def downstream_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


JOB = dg.define_asset_job("toy_range", selection=[upstream, downstream])
DEFS = dg.Definitions(assets=[upstream, downstream], asset_checks=[downstream_check], jobs=[JOB])


@pytest.fixture(params=["embedded", "embedded_old_sqlite", "dagster_sqlite"])
def instance(request: pytest.FixtureRequest, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """The CLI's embedded instance (also on an SQLite older than 3.35, without INSERT ... RETURNING, as
    some Linux distributions' Pythons link), and (as the reference) Dagster's own SQLite storage."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test; _embedded_home sets it
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    if request.param == "embedded_old_sqlite":
        # SQLAlchemy's SQLite dialect decides RETURNING from the driver's SQLite version.
        monkeypatch.setattr(sqlite3.dbapi2, "sqlite_version_info", (3, 34, 1))
    if request.param.startswith("embedded"):
        _embedded_home(tmp_path)
    else:
        (tmp_path / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {tmp_path}\n")
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        yield inst
    FAIL["fail"] = False


def _run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = DEFS.resolve_job_def("toy_range")
    return job.execute_in_process(instance=instance, tags=RANGE_TAGS, raise_on_error=False)


def _status(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[set[str], set[str], set[str]]:
    value = get_and_update_asset_status_cache_value(instance, key, DAYS)
    assert value is not None
    return (
        set(value.deserialize_materialized_partition_subsets(DAYS).get_partition_keys()),
        set(value.deserialize_failed_partition_subsets(DAYS).get_partition_keys()),
        set(value.deserialize_in_progress_partition_subsets(DAYS).get_partition_keys()),
    )


def test_the_embedded_instance_uses_the_batching_storage(tmp_path: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    _embedded_home(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        assert isinstance(inst.event_log_storage, BatchingSqliteEventLogStorage)
        ref = inst.get_ref().storage_data
        assert ref is not None and (ref.module_name, ref.class_name) == (
            "cms_stripe.instance_storage",
            "EmbeddedSqliteStorage",
        )
        # Dagster's own layout under DAGSTER_HOME: an existing home keeps its history.
        assert (tmp_path / "history" / "runs" / "index.db").exists()
        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")  # a user's value wins (0: no batching)
    with dg.DagsterInstance.from_config(str(tmp_path)):
        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "0"


def test_a_range_run_stores_every_partitions_events(instance: dg.DagsterInstance) -> None:
    result = _run(instance)
    assert result.success
    # The run's own event log holds each event once: 2 assets x 10 partitions.
    stored = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert len(stored) == 20
    for asset in ("upstream", "downstream"):
        key = dg.AssetKey(asset)
        assert instance.get_materialized_partitions(key) == set(KEYS)
        for pk in KEYS:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[pk]), limit=5
            ).records
            assert len(records) == 1
            mat = records[0].asset_materialization
            assert mat is not None and mat.partition == pk and mat.metadata["day"].value == pk
        planned = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
        planned_days = [r.event_log_entry.get_dagster_event().partition for r in planned if r.asset_key == key]
        assert sorted(str(day) for day in planned_days) == KEYS
        assert _status(instance, key) == (set(KEYS), set(), set())
        # The asset table's latest materialization is the run's last partition.
        record = instance.get_asset_records([key])[0]
        last = record.asset_entry.last_materialization
        assert last is not None and last.asset_materialization is not None
        assert last.asset_materialization.partition == "2026-01-10"
        assert record.asset_entry.last_run_id == result.run_id
    # The check was planned once per partition of the range (one execution row each), as Dagster
    # records it; its evaluation (not partitioned) is one more row.
    executions = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("downstream"), "downstream_check"), limit=100
    )
    assert sorted(e.partition for e in executions if e.partition is not None) == KEYS
    assert len(executions) == len(KEYS) + 1
    assert {e.run_id for e in executions} == {result.run_id}


def test_a_failed_range_run_marks_every_partition_failed(instance: dg.DagsterInstance) -> None:
    assert _run(instance).success
    FAIL["fail"] = True
    failed = _run(instance)
    assert not failed.success
    # Both the failed asset and the one its failure skipped: each partition was planned and not
    # materialized by a run that failed. The earlier materializations stay recorded.
    for asset in ("upstream", "downstream"):
        assert _status(instance, dg.AssetKey(asset)) == (set(KEYS), set(KEYS), set())
    FAIL["fail"] = False
    assert _run(instance).success
    assert _status(instance, dg.AssetKey("upstream")) == (set(KEYS), set(), set())


def test_a_batch_keeps_non_asset_events_in_order(tmp_path: pathlib.Path) -> None:
    """A batch mixing asset events with others (Dagster batches planned asset checks with planned
    materializations) stores all of them; the asset events still land in the index database."""
    storage = BatchingSqliteEventLogStorage(str(tmp_path / "runs"))
    with dg.instance_for_test() as reference:
        result = DEFS.resolve_job_def("toy_range").execute_in_process(instance=reference, tags=RANGE_TAGS)
        entries = [r.event_log_entry for r in reference.get_records_for_run(result.run_id).records]
    storage.store_event_batch(entries)
    stored = storage.get_records_for_run(result.run_id).records
    assert [r.event_log_entry.dagster_event_type for r in stored] == [e.dagster_event_type for e in entries]
    mats = storage.fetch_materializations(dg.AssetKey("downstream"), limit=100).records
    assert sorted(r.partition_key for r in mats) == KEYS  # type: ignore[type-var]
