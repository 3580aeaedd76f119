"""Stores asset DataFrames one file per daily partition, so single-run range backfills work.

Dagster's default filesystem IO manager refuses an output that spans several partitions, and our
backfill policy is a single run per range (one Stripe writer, one state read per 100 products). Every
frame we store carries `updated_at`, so a range output splits cleanly into its partitions (open edges
included: see `core.days.PartitionSpan`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from cms_stripe.core.days import PartitionSpan
from cms_stripe.core.settings import Settings

PARTITION_COLUMN = "updated_at"


def _partition_of(span: PartitionSpan, ts: Any) -> str:
    # The same open-edged rule the assets use: older and undated rows go to the first partition,
    # future-stamped ones to the last, so no row of a range output is left out of every file.
    return span.key_for(None if pd.isna(ts) else pd.Timestamp(ts).to_pydatetime())


class DailyFrameIOManager(dg.ConfigurableIOManager):
    """Pickled DataFrames under `<root>/frames/<asset path>/<partition>.pkl`, the root being
    CMS_STRIPE_FRAMES_DIR of the code location's environment, else the instance's storage folder.

    The folder is deliberately not config: unpickling is code execution, and a folder chosen per run
    (the Launchpad) would let whoever opens the UI load pickles from, or write them to, any folder."""

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
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        # Atomic replace: a crash mid-write never leaves a half-written partition behind.
        os.replace(tmp, path)

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
        days = (
            obj[PARTITION_COLUMN].map(lambda ts: _partition_of(span, ts)) if len(obj) else pd.Series([], dtype=object)
        )
        for key in keys:
            self._write(root / f"{key}.pkl", obj[days == key].reset_index(drop=True))

    def load_input(self, context: dg.InputContext) -> Any:
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
