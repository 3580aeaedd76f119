"""Stores asset DataFrames one file per daily partition, so single-run range backfills work.

Dagster's default filesystem IO manager refuses an output that spans several partitions, and our
backfill policy is a single run per range (one Stripe writer, one state read per 100 products). Every
frame we store carries `updated_at`, so a range output splits cleanly into its partitions (open edges
included: see `core.days.PartitionSpan`).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from cms_stripe.core.days import PartitionSpan
from cms_stripe.core.settings import Settings

PARTITION_COLUMN = "updated_at"
# The most bytes of pickled frames handed from step to step in memory (~100,000 rows); beyond it the
# next steps read the files.
HANDOFF_BUDGET_BYTES = 64 * 1024 * 1024


def _partition_of(span: PartitionSpan, ts: Any) -> str:
    # The same open-edged rule the assets use: older and undated rows go to the first partition,
    # future-stamped ones to the last, so no row of a range output is left out of every file.
    return span.key_for(None if pd.isna(ts) else pd.Timestamp(ts).to_pydatetime())


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    # Atomic replace: a crash mid-write never leaves a half-written partition behind.
    os.replace(tmp, path)


class DailyFrameIOManager(dg.ConfigurableIOManager):
    """Pickled DataFrames under `<root>/frames/<asset path>/<partition>.pkl`, the root being
    CMS_STRIPE_FRAMES_DIR of the code location's environment, else the instance's storage folder.

    The folder is deliberately not config: unpickling is code execution, and a folder chosen per run
    (the Launchpad) would let whoever opens the UI load pickles from, or write them to, any folder."""

    # Range outputs of this run's earlier steps, by (asset, run, partition keys): see handle_output.
    _handoff: dict[tuple[Any, ...], bytes] = PrivateAttr(default_factory=dict)

    def _root(self, context: dg.InputContext | dg.OutputContext) -> Path:
        configured = Settings.from_env().frames_dir
        if configured:
            root = Path(configured)
        else:
            instance = context.instance if isinstance(context, dg.InputContext) else context.step_context.instance
            root = Path(instance.storage_directory())
        return root.joinpath("frames", *context.asset_key.path)

    @staticmethod
    def _write(path: Path, obj: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        root = self._root(context)
        if not context.has_asset_partitions:
            self._write(root / "__all__.pkl", obj)
            return
        keys = list(context.asset_partition_keys)
        if len(keys) == 1:
            self._write(root / f"{keys[0]}.pkl", obj)
            return
        if not isinstance(obj, pd.DataFrame) or PARTITION_COLUMN not in obj.columns:
            name = context.asset_key.to_user_string()
            raise TypeError(f"a range output of {name} must be a DataFrame with {PARTITION_COLUMN!r}")
        # Clamped to the run's own keys: what it read lies in its range (its open edges included), even
        # if midnight passed since and the last partition moved.
        span = PartitionSpan(keys[0], keys[-1])
        rows_by_day = (
            obj.groupby(obj[PARTITION_COLUMN].map(lambda ts: _partition_of(span, ts)), sort=False).indices
            if len(obj)
            else {}
        )
        root.mkdir(parents=True, exist_ok=True)
        # Most days of a long range hold no row: their (identical) empty frame is pickled once.
        empty = pickle.dumps(obj.iloc[:0].reset_index(drop=True), protocol=pickle.HIGHEST_PROTOCOL)
        for key in keys:
            rows = rows_by_day.get(key)
            data = (
                empty
                if rows is None
                else pickle.dumps(obj.iloc[rows].reset_index(drop=True), protocol=pickle.HIGHEST_PROTOCOL)
            )
            _write_bytes(root / f"{key}.pkl", data)
        # What load_input would read back, in its order (day by day, then as output): handed over
        # in memory to the next steps of this run when they run in this process (the CLI's
        # in-process runs), instead of unpickling thousands of day files it has just written.
        order = [i for key in keys for i in rows_by_day.get(key, ())]
        data = pickle.dumps(
            obj.iloc[order].reset_index(drop=True) if order else obj.iloc[:0].reset_index(drop=True),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        # Held until the run ends (two steps read the raw rows): only while the run's frames stay
        # small, so a big catalog's run does not keep extra copies of its rows in memory.
        if sum(map(len, self._handoff.values())) + len(data) <= HANDOFF_BUDGET_BYTES:
            self._handoff[self._handoff_key(context.asset_key, context.run_id, keys)] = data

    @staticmethod
    def _handoff_key(asset_key: dg.AssetKey, run_id: str, keys: Sequence[str]) -> tuple[Any, ...]:
        return (tuple(asset_key.path), run_id, tuple(keys))

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is not None and context.has_asset_partitions:
            handoff = self._handoff.get(
                self._handoff_key(context.asset_key, upstream.run_id, list(context.asset_partition_keys))
            )
            if handoff is not None:
                # Unpickled for each reader, as from the files: a step that changes its input (even
                # a dict in a cell) cannot change what a later step gets.
                return pickle.loads(handoff)  # noqa: S301 - pickled by this object
        root = self._root(context)
        if not context.has_asset_partitions:
            with (root / "__all__.pkl").open("rb") as fh:
                return pickle.load(fh)  # noqa: S301 - our own files in instance storage
        frames = []
        for key in context.asset_partition_keys:
            path = root / f"{key}.pkl"
            if not path.exists():
                name = context.asset_key.to_user_string()
                raise FileNotFoundError(f"{name} partition {key} has not been materialized")
            with path.open("rb") as fh:
                frames.append(pickle.load(fh))  # noqa: S301 - our own files in instance storage
        if len(frames) == 1:
            return frames[0]
        non_empty = [f for f in frames if len(f)]
        return pd.concat(non_empty, ignore_index=True) if non_empty else frames[0]
