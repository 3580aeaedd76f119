"""Where the Stripe write journal is kept: the Dagster instance's event log.

Why there and not in the CMS database: the rollback already needs the instance (to find the run and
its CMS backups' run id); the instance is shared by every machine of a deployment (Postgres storage)
and by the UI, which shows each batch as an observation of `stripe_write_journal`; and it works the
same for both CMS backends (PostgREST cannot create a journal table, so the REST backend would need
a hand-made one). With the embedded SQLite instance the journal lives beside the runs it describes.

Each batch is recorded with `report_runless_asset_event`, which stores it before returning.
`context.log_event` would not do: it buffers events until the step returns, so a crash would lose
the journal of writes that happened. The run id is in the metadata (a runless event has none).
Batches hold at most ENTRIES_PER_EVENT entries so one event record stays small (a typical entry is
under 1 kB: about 200 kB per event).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from cms_stripe.constants import GROUP, JOURNAL_ASSET, JOURNAL_ENTRIES, JOURNAL_PHASE, JOURNAL_RUN
from cms_stripe.core.journal import JournalEntry, chunks

JOURNAL_KEY = dg.AssetKey(JOURNAL_ASSET)
PAGE = 1000

# Declared so the UI gives the journal a page (its observations, newest first) in the sync's group;
# nothing materializes it.
stripe_write_journal = dg.AssetSpec(
    JOURNAL_KEY,
    group_name=GROUP,
    kinds={"stripe"},
    description="Every Stripe write of every sync run (before/after per product), one observation per batch; "
    "`cms-stripe rollback --stripe` and the stripe_rollback job undo a run from it.",
)


class InstanceJournal:
    """A JournalSink writing to the Dagster instance's event log."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str) -> None:
        self.instance = instance
        self.run_id = run_id

    def record(self, entries: Sequence[JournalEntry]) -> None:
        for batch in chunks(list(entries)):
            phases = sorted({e.phase for e in batch})
            self.instance.report_runless_asset_event(
                dg.AssetObservation(
                    asset_key=JOURNAL_KEY,
                    description=f"{len(batch)} Stripe writes ({', '.join(phases)}) of run {self.run_id}",
                    metadata={
                        JOURNAL_RUN: dg.MetadataValue.text(self.run_id),
                        JOURNAL_PHASE: dg.MetadataValue.text(",".join(phases)),
                        "entries": dg.MetadataValue.int(len(batch)),
                        JOURNAL_ENTRIES: dg.MetadataValue.json([e.to_dict() for e in batch]),
                    },
                )
            )


def _batches(
    instance: dg.DagsterInstance, since: float | None, until: float | None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(run id, entries) per stored journal batch in the window, oldest first."""
    cursor = None
    while True:
        page = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=JOURNAL_KEY, after_timestamp=since, before_timestamp=until),
            limit=PAGE,
            cursor=cursor,
            ascending=True,
        )
        for record in page.records:
            observation = record.asset_observation
            if observation is None:
                continue
            meta = observation.metadata
            payload: Any = getattr(meta.get(JOURNAL_ENTRIES), "value", None) or []
            yield str(getattr(meta.get(JOURNAL_RUN), "value", None)), list(payload)
        if not page.has_more:
            return
        cursor = page.cursor


def read_journal(
    instance: dg.DagsterInstance, run_id: str, *, since: float | None = None, until: float | None = None
) -> list[JournalEntry]:
    """The entries of one run (by its root run id), oldest first. `since` / `until`: the time the run
    (with its re-executions) was writing, so other runs' journal batches are mostly not read at all."""
    out: list[JournalEntry] = []
    for run, payload in _batches(instance, since, until):
        if run == run_id:
            out.extend(JournalEntry.from_dict(e) for e in payload)
    return out


def later_writers(instance: dg.DagsterInstance, run_id: str, *, since: float | None = None) -> dict[str, str]:
    """Product id → the first other run that journaled a write for it after `run_id` did.

    Such a product holds that run's write now (or may, for an intent without result): undoing
    `run_id` there would undo the later run's write instead, so the rollback leaves it alone."""
    ours: set[str] = set()
    later: dict[str, str] = {}
    for run, payload in _batches(instance, since, None):
        for entry in payload:
            pid = entry.get("product_id") or ""
            if run == run_id:
                ours.add(pid)
            elif pid in ours and pid not in later:
                later[pid] = run
    return later
