"""Run settings that are not secrets: dry-run, skip-existing, checkpoints, thresholds.

Each field left unset (None, the Launchpad's default) takes the value of the code location's
environment (the tool we replace's variables, through the one Settings model) when the run starts;
run config (Launchpad, the CLI) can set it per run. The environment is not written into the config
defaults: those are part of the job snapshot, which must not depend on whose environment loaded the
code (a CLI run with MIGRATION_DRY_RUN=false and the webserver's runs share one snapshot). Two
things run config cannot do: choose a folder (reports go to MIGRATION_REPORTS_DIR of the code
location's environment) and allow live writes the environment has not allowed (`live_allowed`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import model_validator

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


# The resource's fields: all default to None, "this code location's environment when the run starts".
FROM_ENVIRONMENT = ("dry_run", "skip_existing", "checkpoint_interval", "validation_threshold", "allow_live")


class SyncSettingsResource(dg.ConfigurableResource):
    """How a sync run behaves; dry-run unless told otherwise. A field left unset takes the value of
    this code location's environment (MIGRATION_DRY_RUN, MIGRATION_SKIP_EXISTING,
    MIGRATION_CHECKPOINT_INTERVAL, MIGRATION_VALIDATION_THRESHOLD, MIGRATION_ALLOW_LIVE) when the
    run starts."""

    if TYPE_CHECKING:
        # Never None once built: `_from_environment` fills every unset field.
        dry_run: bool = None  # type: ignore[assignment]
        skip_existing: bool = None  # type: ignore[assignment]
        checkpoint_interval: int = None  # type: ignore[assignment]
        validation_threshold: float = None  # type: ignore[assignment]
        allow_live: bool = None  # type: ignore[assignment]
    else:
        dry_run: bool | None = None
        skip_existing: bool | None = None
        checkpoint_interval: int | None = None
        validation_threshold: float | None = None
        allow_live: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """Unset fields from the environment, read when the resource is built: for a run, when it
        starts (Dagster builds the run's resource from its run config then). Without a value the
        Settings model's own defaults apply: dry run on, live writes off."""
        if not isinstance(data, dict):
            return data
        unset = [name for name in FROM_ENVIRONMENT if data.get(name) is None]
        if not unset:
            return data
        env = Settings.from_env()
        return {**data, **{name: getattr(env, name) for name in unset}}

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
        """The resource as Definitions wires it: no values, so no environment in the config defaults
        (nor in the job snapshot); each run reads the environment when it starts."""
        return cls()
