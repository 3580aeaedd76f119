"""Run settings that are not secrets: dry-run, skip-existing, checkpoints, thresholds.

Defaults come from the environment variables of the tool we replace (read when the code location
loads); each run can override them in its run config (Launchpad, or the CLI)."""

from __future__ import annotations

import os

import dagster as dg

from cms_stripe.core.settings import Settings


class SyncSettingsResource(dg.ConfigurableResource):
    """How a sync run behaves; dry-run unless told otherwise."""

    dry_run: bool = True
    skip_existing: bool = True
    checkpoint_interval: int = 100
    validation_threshold: float = 0.95
    reports_dir: str = "reports"
    allow_live: bool = False

    @classmethod
    def from_env(cls) -> SyncSettingsResource:
        s = Settings.from_env(os.environ)
        return cls(
            dry_run=s.dry_run,
            skip_existing=s.skip_existing,
            checkpoint_interval=s.checkpoint_interval,
            validation_threshold=s.validation_threshold,
            reports_dir=s.reports_dir,
            allow_live=s.allow_live,
        )
