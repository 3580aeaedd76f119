"""The run's Dagster events in the daily log file (`logs/migration-YYYY-MM-DD.log`).

One line per Dagster event (run start with the masked settings, steps with their durations,
materializations, observations, check evaluations, failures with their error, the run's end) and
per `context.log` message, scrubbed of secrets like every line of that file, beside the sync's own
lines (writes, row errors, checkpoints). A message the sync already wrote there itself (progress,
notes) is not repeated.

Two ways in, because Dagster starts a job's logger only when the run config names it:
- the `migration_log` logger of every job (Definitions `loggers`), named in the run config of the
  runs `cms-stripe`, the schedule and the change sensor start (`with_log_file`);
- the same handler as an instance-wide Dagster handler (`python_logs: dagster_handler_config` in
  dagster.yaml, and in the embedded instance's), which also reaches runs launched from the UI
  whatever their run config.
A run reached both ways writes each record once (records carry a unique message id).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from cms_stripe.core import runlog
from cms_stripe.core.settings import Settings

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


def _logs_dir() -> str:
    try:
        return Settings.from_env().logs_dir
    except Exception:  # a settings error must not stop the run's logging
        return os.environ.get("MIGRATION_LOGS_DIR") or runlog.DEFAULT_LOGS_DIR


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
        self.logs_dir = _logs_dir()

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
                text = f"{name} {step}: {message}"
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
