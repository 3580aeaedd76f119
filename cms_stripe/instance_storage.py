"""Dagster storage for the embedded default: Dagster's own SQLite storage (same files, same schema, same
layout under DAGSTER_HOME), except that a batch of asset events is stored in one transaction per
database instead of one transaction (and four SQLite connections, each ending in a WAL checkpoint)
per event.

Why: a range run over N daily partitions records 4 x N "planned" events when it is created and 4 x N
materializations as it runs. Dagster's SQLite storage writes each of them on its own at 20-30 ms, so
the overhead of a no-op sync grew to minutes with a few hundred days. Dagster already hands these
events over in batches when `DAGSTER_EVENT_BATCH_SIZE` is set (one batch per step's materializations,
one per run's planned events), but `SqliteEventLogStorage.store_event_batch` stores them one by one.

Nothing read from the storage changes: every event keeps its own row in the run's database and in the
index database (per-partition planned and materialization events are what the UI's materialized,
failed and in-progress partitions and `fetch_materializations` are built from), and the asset table
ends in the state the same events stored one by one would leave.

Used through the embedded instance's dagster.yaml, which the CLI, `make ui` and `cms-stripe dev` write
(see `cms_stripe.cli.EMBEDDED_DAGSTER_YAML`):

    storage:
      custom:
        module: cms_stripe.instance_storage
        class: EmbeddedSqliteStorage
        config:
          base_dir: "/path/to/.dagster_home"
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster._utils import mkdir_p

# Dagster reads this variable whenever an event arrives; unset or 0, nothing is batched. One step's
# materializations (one per partition) or one run's planned events go to storage in batches of this
# many. A user's own value (0 turns batching off) wins.
EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
DEFAULT_EVENT_BATCH_SIZE = "1000"


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with a real `store_event_batch`."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        # Keep the order of the batch: consecutive asset events go together, anything else (asset
        # check planned events, which Dagster batches with the planned materializations) is stored
        # as Dagster stores it.
        pending: list[EventLogEntry] = []
        for event in events:
            if event.dagster_event is not None and event.dagster_event.event_type in ASSET_EVENTS:
                pending.append(event)
                continue
            self._store_asset_events(pending)
            pending = []
            self.store_event(event)
        self._store_asset_events(pending)

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        if not events:
            return
        rows = [self._event_to_row(event) for event in events]
        # The run's own database: one transaction per run (a batch normally holds one run's events).
        by_run: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_run.setdefault(row["run_id"], []).append(row)
        for run_id, run_rows in by_run.items():
            with self.run_connection(run_id) as conn:
                conn.execute(SqlEventLogStorageTable.insert(), run_rows)
        # The index database mirrors every asset event (its ids are the storage ids that asset
        # queries return), then the asset-event tags and the asset table, in one transaction.
        with self.index_transaction() as conn:
            event_ids = _insert_returning_ids(conn, rows)
            if len(event_ids) != len(rows):  # as Dagster's store_event: tags need the id
                raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in _last_of_each_kind(events, event_ids):
                self._store_asset_event(conn, event, event_id)

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        # Dagster's own rows (one per partition of the run's range), but the event is serialized once
        # and the rows go in as one executemany: Dagster serializes the same event again for each
        # partition, seconds per check over thousands of daily partitions.
        planned = cast(AssetCheckEvaluationPlanned, event.get_dagster_event().event_specific_data)
        partition_keys: list[str | None] = (
            list(planned.partitions_subset.get_partition_keys()) if planned.partitions_subset else [None]
        )
        common = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), [{**common, "partition": key} for key in partition_keys])


def _insert_returning_ids(conn: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert the rows into the index database's event table; their ids, in the rows' order.

    One statement (INSERT ... RETURNING, SQLite 3.35 and later) where the driver's SQLite has it,
    instead of a round of SQLAlchemy's statement machinery per event; one insert per row otherwise
    (SQLAlchemy refuses RETURNING on an older SQLite, as some Linux distributions' Pythons link)."""
    dialect = conn.dialect
    if dialect.insert_executemany_returning and dialect.insert_executemany_returning_sort_by_parameter_order:
        inserted = conn.execute(
            SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True),
            rows,
        )
        return [int(i) for (i,) in inserted if i is not None]
    ids = []
    for row in rows:
        key = conn.execute(SqlEventLogStorageTable.insert(), row).inserted_primary_key
        if key is not None and key[0] is not None:
            ids.append(int(key[0]))
    return ids


def _last_of_each_kind(events: Sequence[EventLogEntry], event_ids: Sequence[int]) -> list[tuple[EventLogEntry, int]]:
    """The events whose asset-table update survives when all of them are applied in order.

    Each kind of event (materialization, planned, observation) sets a fixed set of columns of its
    asset's row, so applying only the last event of each kind per asset, in the original order,
    leaves the row exactly as applying every event would."""
    last: dict[tuple[str, str], int] = {}
    for index, event in enumerate(events):
        dagster_event = event.get_dagster_event()
        if dagster_event.asset_key is None:
            continue
        last[(dagster_event.asset_key.to_string(), dagster_event.event_type_value)] = index
    return [(events[i], event_ids[i]) for i in sorted(last.values())]


class EmbeddedSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (`storage: sqlite:`) with the batching event log above.

    Instantiated in every process that loads the instance (CLI, `dagster dev`'s webserver and daemon,
    run workers), so it also turns Dagster's event batching on there."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, DEFAULT_EVENT_BATCH_SIZE)
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        # DagsterStorage's own initialiser (DagsterSqliteStorage's would build a second event log).
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]
    ) -> EmbeddedSqliteStorage:
        base_dir = str(config_value["base_dir"])
        mkdir_p(base_dir)
        return cls(base_dir, inst_data=inst_data)
