"""Run settings that are not secrets: dry-run, skip-existing, checkpoints, thresholds.

Defaults come from the environment variables of the tool we replace (read when the code location
loads); each run can override them in its run config (Launchpad, or the CLI). Two things run config
cannot do: choose a folder (reports go to MIGRATION_REPORTS_DIR of the code location's environment)
and allow live writes the environment has not allowed (`live_allowed`)."""

from __future__ import annotations

import os

import dagster as dg

from cms_stripe.core.settings import Settings, env_bool, reports_dir_from_env

ENV_ALLOW_LIVE = "MIGRATION_ALLOW_LIVE"


class SyncSettingsResource(dg.ConfigurableResource):
    """How a sync run behaves; dry-run unless told otherwise."""

    dry_run: bool = True
    skip_existing: bool = True
    checkpoint_interval: int = 100
    validation_threshold: float = 0.95
    allow_live: bool = False

    @property
    def reports_dir(self) -> str:
        """Not config: a folder set per run would let whoever opens the UI write files anywhere."""
        return reports_dir_from_env(os.environ)

    @property
    def live_allowed(self) -> bool:
        """Writes with a live Stripe key need both this run's `allow_live` and MIGRATION_ALLOW_LIVE=true
        in the code location's environment (`cms-stripe migrate --confirm-live` sets it for its run):
        run config can withdraw the allowance, never grant one the deployment did not."""
        return self.allow_live and env_bool(os.environ, ENV_ALLOW_LIVE, False)

    @classmethod
    def from_env(cls) -> SyncSettingsResource:
        s = Settings.from_env(os.environ)
        return cls(
            dry_run=s.dry_run,
            skip_existing=s.skip_existing,
            checkpoint_interval=s.checkpoint_interval,
            validation_threshold=s.validation_threshold,
            allow_live=s.allow_live,
        )
