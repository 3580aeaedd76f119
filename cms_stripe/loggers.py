"""The run's Dagster events in the daily log file (`logs/migration-YYYY-MM-DD.log`).

One line per Dagster event (run start with the masked settings, steps with their durations,
materializations, observations, check evaluations, failures with their error, the run's end) and
per `context.log` message, scrubbed of secrets like every line of that file, beside the sync's own
lines (writes, row errors, checkpoints). A message the sync already wrote there itself (progress,
notes) is not repeated.

Two ways in, both from this code location only (an instance-wide `python_logs` handler would make
every code location on the instance import cms_stripe, and log other teams' runs here):
- the `migration_log` logger of every job (Definitions `loggers`), named in the run config of the
  runs `cms-stripe`, the schedule and the change sensor start (`with_log_file`): every event of the
  run, its start (with the masked settings) and end included;
- for runs whose config names no logger (the Launchpad, "Materialize" on the asset graph, asset
  backfills), our resources attach the same handler to the run's log manager when they set up for
  execution (`attach_to_run`): from then on every event of the steps that use them (step starts and
  ends with durations, materializations, observations, checks, messages, failures). Dagster logs
  the run's own start and end in the run worker, outside any step: those stay in the UI's run log.
A run reached both ways writes each record once (records carry a unique message id).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from cms_stripe import constants as c
from cms_stripe.core import runlog, settings

MIGRATION_LOG_LOGGER = "migration_log"
DAGSTER_KIND = "dagster"

_seen_lock = threading.Lock()
_seen: deque[str] = deque(maxlen=4096)
_seen_set: set[str] = set()


def _first_time(message_id: str | None) -> bool:
    if not message_id:
        return True
    with _seen_lock:
        if message_id in _seen_set:
            return False
        if len(_seen) == _seen.maxlen:
            _seen_set.discard(_seen[0])
        _seen.append(message_id)
        _seen_set.add(message_id)
        return True


def _error_text(error: Any) -> str:
    # Dagster wraps the step's exception: the innermost cause is what the operator needs.
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return str(getattr(error, "message", error)).strip()


class MigrationLogHandler(logging.Handler):
    """Writes Dagster's records of a run (those carrying its `dagster_meta`) to the daily log file."""

    def __init__(self, level: int | str = logging.DEBUG) -> None:
        super().__init__(level)
        # Read when Dagster builds the run's (or step's) log manager: the run's environment.
        self.logs_dir = settings.logs_dir()
        self.warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        # An unwritable folder would otherwise print a traceback per event: say it once, then stay
        # quiet; the run goes on (its events are still in the instance and the UI).
        if not self.warned:
            self.warned = True
            runlog.warn_unwritable(self.logs_dir, sys.exc_info()[1])

    def emit(self, record: logging.LogRecord) -> None:
        meta: Mapping[str, Any] | None = getattr(record, "dagster_meta", None)
        if not meta or not meta.get("run_id"):
            return
        try:
            if not _first_time(meta.get("log_message_id")):
                return
            run_id = str(meta["run_id"])
            event = meta.get("dagster_event")
            message = str(meta.get("orig_message", record.getMessage()))
            step = meta.get("step_key") or "-"
            if event is None:
                if runlog.told_already(run_id, message):
                    return
                text = f"LOG {step}: {message}"
            else:
                name = event.event_type.name
                text = f"{name} {step}: {_describe(event) or message}"
                error = getattr(event.event_specific_data, "error", None)
                if error is not None:
                    text += f" error: {_error_text(error)}"
                if name == "RUN_START":
                    from cms_stripe.reporting import masked_settings

                    text += " settings: " + " ".join(f"{k}={v}" for k, v in masked_settings().items())
            at = datetime.fromtimestamp(record.created, UTC)
            runlog.append_line(self.logs_dir, run_id, at, record.levelname, DAGSTER_KIND, text)
        except Exception:  # a full disk must not fail the run
            self.handleError(record)


def _figure(value: Any) -> str | None:
    """A metadata value short enough for a log line (numbers, flags, short texts), else None."""
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and 0 < len(value) <= 40 and "\n" not in value:
        return f'"{value}"' if " " in value else value
    return None


MAX_FIGURES = 10
# What an operator looks for first on a materialization or observation line; other short entries follow.
HEADLINE_KEYS = (
    c.DRY_RUN,
    c.ROWS,
    c.VALID_ROWS,
    c.QUARANTINED_ROWS,
    c.PLANNED,
    c.CREATED,
    c.UPDATED,
    c.REPRICED,
    c.ARCHIVED,
    c.REACTIVATED,
    c.FAILED,
    c.SKIPPED,
    c.WRITTEN_BACK,
    c.CHECKPOINT_DONE,
    c.MATCHED,
    c.MISSING,
    c.DRIFT,
    c.STRIPE_CALLS,
    c.RATE_LIMITED,
    c.DURATION_S,
)


def _describe(event: Any) -> str | None:
    """A materialization or observation as a line an operator can tell apart from its neighbours:
    the asset, the partition and the first few short figures of its metadata."""
    data = event.event_specific_data
    found = getattr(data, "materialization", None)
    verb = "materialized"
    if found is None:
        found = getattr(data, "asset_observation", None)
        verb = "observed"
    if found is None:
        return None
    text = f"{found.asset_key.to_user_string()} {verb}"
    if found.partition:
        text += f" partition={found.partition}"
    metadata = dict(found.metadata or {})
    ordered = [k for k in HEADLINE_KEYS if k in metadata] + [k for k in metadata if k not in HEADLINE_KEYS]
    figures = []
    for key in ordered:
        entry = metadata[key]
        shown = _figure(getattr(entry, "value", entry))
        if shown is not None:
            figures.append(f"{key}={shown}")
        if len(figures) == MAX_FIGURES:
            break
    return " ".join([text, *figures])


def attach_to_run(context: dg.InitResourceContext) -> None:
    """Give the run `context` initializes a resource for the log file, when its run config did not
    (runs launched from the UI). Called by our resources' `setup_for_execution`, so only runs of
    this code location are logged, and nothing is configured on the instance.

    Dagster has no public way to add a handler to a run's log manager once built: its handler list is
    shared by every `with_tags` copy of it (each step's `context.log`, the resource's own), so one
    append reaches every later event of this process's steps. Idempotent: each of our resources calls
    it. Never raises: a log-file problem must not stop a run."""
    try:
        run = context.run
        log = context.log
        if run is None or log is None:
            return
        named: Any = (run.run_config or {}).get("loggers") or {}
        if MIGRATION_LOG_LOGGER in named:
            return  # the job's logger writes this run, its start and end included
        handlers = getattr(getattr(log, "_dagster_handler", None), "_handlers", None)
        if not isinstance(handlers, list) or any(isinstance(h, MigrationLogHandler) for h in handlers):
            return
        handlers.append(MigrationLogHandler())
    except Exception:  # the run matters more than its log file
        return


@dg.logger(
    config_schema={"log_level": dg.Field(str, default_value="DEBUG", is_required=False)},
    description="Appends the run's Dagster events to the daily migration log file (MIGRATION_LOGS_DIR), "
    "secrets scrubbed.",
)
def migration_log_file(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    # Not registered with logging.getLogger: one per run (and step process), dropped with it.
    logger = logging.Logger(f"cms_stripe.migration_log.{init_context.run_id}", level)
    logger.addHandler(MigrationLogHandler(level))
    return logger


# Definitions `loggers` replace a job's default console logger: it stays, the CLI quiets it.
all_loggers: dict[str, dg.LoggerDefinition] = {
    "console": dg.colored_console_logger,
    MIGRATION_LOG_LOGGER: migration_log_file,
}


# What Dagster starts when a run config names no logger; naming one would turn it off.
DEFAULT_CONSOLE = {"console": {"config": {"log_level": "DEBUG"}}}


def with_log_file(run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`run_config` whose loggers include the log file, and the console as it was."""
    config = dict(run_config or {})
    loggers = dict(config.get("loggers") or DEFAULT_CONSOLE)
    loggers.setdefault(MIGRATION_LOG_LOGGER, {})
    config["loggers"] = loggers
    return config
