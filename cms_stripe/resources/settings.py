"""Run settings that are not secrets: dry-run, skip-existing, checkpoints, thresholds.

Defaults come from the environment variables of the tool we replace (read when the code location
loads); each run can override them in its run config (Launchpad, or the CLI). Two things run config
cannot do: choose a folder (reports go to MIGRATION_REPORTS_DIR of the code location's environment)
and allow live writes the environment has not allowed (`live_allowed`)."""

from __future__ import annotations

import dagster as dg

from cms_stripe.core.settings import LiveKeyRefused, Settings, live_write_refusal
from cms_stripe.loggers import attach_to_run


class LiveWriteRefused(dg.Failure, LiveKeyRefused):
    """A write refused by the live-key guard (to Stripe before a run writes, or to the CMS). Not
    retried: the same key would be refused again."""

    def __init__(self, refusal: str) -> None:
        super().__init__(description=refusal, allow_retries=False)


def refuse_live_writes(what: str, allow_live: bool) -> None:
    """The live-key guard for writes a resource makes or starts: with the environment's key live
    (anything not clearly a test key) they need the explicit allowance."""
    refusal = live_write_refusal(what, Settings.from_env().live_key, allow_live)
    if refusal:
        raise LiveWriteRefused(refusal)


class SyncSettingsResource(dg.ConfigurableResource):
    """How a sync run behaves; dry-run unless told otherwise."""

    dry_run: bool = True
    skip_existing: bool = True
    checkpoint_interval: int = 100
    validation_threshold: float = 0.95
    allow_live: bool = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        attach_to_run(context)  # runs launched from the UI name no logger: see cms_stripe.loggers

    @property
    def reports_dir(self) -> str:
        """Not config: a folder set per run would let whoever opens the UI write files anywhere."""
        return Settings.from_env().reports_dir

    @property
    def live_allowed(self) -> bool:
        """Writes with a live Stripe key need both this run's `allow_live` and MIGRATION_ALLOW_LIVE=true
        in the code location's environment (`cms-stripe migrate --confirm-live` sets it for its run):
        run config can withdraw the allowance, never grant one the deployment did not."""
        return self.allow_live and Settings.from_env().allow_live

    @classmethod
    def from_env(cls) -> SyncSettingsResource:
        s = Settings.from_env()
        return cls(
            dry_run=s.dry_run,
            skip_existing=s.skip_existing,
            checkpoint_interval=s.checkpoint_interval,
            validation_threshold=s.validation_threshold,
            allow_live=s.allow_live,
        )
