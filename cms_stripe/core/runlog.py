"""What a sync tells its operator as it goes, as records of one Python logger (`cms_stripe.run`).

The sync emits; whoever listens decides what to show: the console of `cms-stripe` (progress line or
bar, warnings and errors), and the daily log file `logs/migration-YYYY-MM-DD.log`, which the assets
attach for every run, so runs from the UI, the schedule and the sensor are logged like CLI runs.
The same file also receives the run's Dagster events (`cms_stripe.loggers`), through `append_line`.
Each record carries its kind and, for row errors, the CMS id, code and severity as attributes.
No Dagster import.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pathlib
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from cms_stripe.constants import RUN_LOGGER
from cms_stripe.core.settings import scrub

logger = logging.getLogger(RUN_LOGGER)
# Without a handler of its own, WARNING records would reach logging's last-resort stderr handler.
logger.addHandler(logging.NullHandler())
logger.setLevel(logging.INFO)

# Record kinds (the `cms_kind` attribute).
PROGRESS = "progress"
WRITE = "write"
ROW = "row"
CHECKPOINT = "checkpoint"
RUN = "run"
NOTE = "note"

LOG_FILE_PREFIX = "migration-"


def _emit(level: int, kind: str, message: str, **fields: Any) -> None:
    logger.log(level, message, extra={"cms_kind": kind, **{f"cms_{k}": v for k, v in fields.items()}})


def progress(line: str, *, done: int, total: int, success: int, failed: int) -> None:
    _emit(logging.INFO, PROGRESS, line, done=done, total=total, success=success, failed=failed)


def write(cms_id: str, outcome: str, product_id: str | None, price_id: str | None, attempts: int) -> None:
    """A product whose Stripe writes finished (one line per written product)."""
    _emit(
        logging.INFO,
        WRITE,
        f"{outcome} {product_id or '-'} price={price_id or '-'} writes={attempts} cms_id={cms_id}",
        cms_id=cms_id,
        outcome=outcome,
    )


def row_error(cms_id: str, code: str, severity: str, reason: str) -> None:
    """A quarantined, failed or not-written-back row."""
    level = logging.ERROR if severity in ("HIGH", "CRITICAL") else logging.WARNING
    _emit(level, ROW, f"{severity} {code} cms_id={cms_id}: {reason}", cms_id=cms_id, code=code, severity=severity)


def checkpoint(done: int, total: int) -> None:
    _emit(logging.INFO, CHECKPOINT, f"checkpoint: {done}/{total} products finished and written back")


def note(message: str, level: int = logging.INFO) -> None:
    _emit(level, NOTE, message)


def log_file_path(logs_dir: str | pathlib.Path, at: datetime | None = None) -> pathlib.Path:
    day = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")
    return pathlib.Path(logs_dir) / f"{LOG_FILE_PREFIX}{day}.log"


@functools.lru_cache(maxsize=16)
def _day_file(logs_dir: str, day: str) -> pathlib.Path:
    # log_file_path for a UTC day already formatted (the line's own stamp), built once per day.
    return pathlib.Path(logs_dir) / f"{LOG_FILE_PREFIX}{day}.log"


_file_lock = threading.Lock()
# What the sync told the log file itself, per run, for the Dagster-events handler to skip the copy it
# also sent to `context.log` (progress lines and notes go to both, so the UI's run log has them).
_told: dict[str, deque[str]] = {}
_TOLD_WINDOW = 64


class _OpenFile:
    """The day's file, kept open between lines (opening it for each of the thousands of lines of a
    run over many partitions cost more than writing them). Every line is flushed as it is written, so
    a killed process loses none; a file moved or deleted meanwhile (rotation, cleanup) is noticed and
    opened again at its path."""

    def __init__(self) -> None:
        self.path: pathlib.Path | None = None
        self.fh: Any = None
        self.ident: tuple[int, int] | None = None

    def write(self, path: pathlib.Path, line: str) -> None:
        if self.fh is not None and (path != self.path or not self._same_file(path)):
            self.close()
        if self.fh is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = path.open("a", encoding="utf-8")
            stat = os.fstat(self.fh.fileno())
            self.path, self.ident = path, (stat.st_dev, stat.st_ino)
        self.fh.write(line)
        self.fh.flush()

    def _same_file(self, path: pathlib.Path) -> bool:
        try:
            stat = os.stat(path)
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino) == self.ident

    def close(self) -> None:
        fh, self.fh, self.path, self.ident = self.fh, None, None, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()


_open_file = _OpenFile()


def append_line(logs_dir: str | pathlib.Path, run_id: str, at: datetime, level: str, kind: str, text: str) -> None:
    """Append one line to the day's log file of `at`, scrubbed of secrets, naming the run (one
    day's file holds every run of that day)."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    line = f"{stamp}Z {level:<7} run={run_id[:8]} {kind:<10} {scrub(text).replace(chr(10), ' ')}\n"
    path = _day_file(str(logs_dir), stamp[:10])
    with _file_lock:
        try:
            _open_file.write(path, line)
        except BaseException:
            # Whatever failed (a full disk), the next line starts again from opening the file.
            _open_file.close()
            raise


def told_already(run_id: str, text: str) -> bool:
    """True (once) when the sync already wrote `text` to the log file for this run."""
    with _file_lock:
        told = _told.get(run_id)
        if told is not None and text in told:
            told.remove(text)
            return True
    return False


_warned_dirs: set[str] = set()


def warn_unwritable(logs_dir: str | pathlib.Path, error: BaseException | None) -> None:
    """One line on stderr for a log file that cannot be written (instead of a traceback per line),
    once per folder and process: a run has several handlers (the sync's, the Dagster events')."""
    with _file_lock:
        if str(logs_dir) in _warned_dirs:
            return
        _warned_dirs.add(str(logs_dir))
    reason = scrub(f"{type(error).__name__}: {error}") if error is not None else "unknown error"
    # No stderr either (closed, full): nothing is left to tell, and the sync goes on.
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"cms-stripe: warning: cannot write the log file in {logs_dir} ({reason}); "
            "the run goes on; further log-file errors are not shown\n"
        )


class DailyLogFile(logging.Handler):
    """Appends this module's records to `<dir>/migration-YYYY-MM-DD.log` of the record's UTC day,
    every line scrubbed of secrets."""

    def __init__(self, logs_dir: str | pathlib.Path, run_id: str) -> None:
        super().__init__(logging.INFO)
        self.logs_dir = pathlib.Path(logs_dir)
        self.run_id = run_id
        self.warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        # Warn once, then stay quiet: a log-file problem must never fail, or flood, a sync.
        if not self.warned:
            self.warned = True
            warn_unwritable(self.logs_dir, sys.exc_info()[1])

    def path(self, at: datetime | None = None) -> pathlib.Path:
        return log_file_path(self.logs_dir, at)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            at = datetime.fromtimestamp(record.created, UTC)
            text = record.getMessage()
            append_line(self.logs_dir, self.run_id, at, record.levelname, getattr(record, "cms_kind", NOTE), text)
            with _file_lock:
                _told.setdefault(self.run_id, deque(maxlen=_TOLD_WINDOW)).append(text)
        except Exception:  # a full disk must not fail the sync
            self.handleError(record)


@contextmanager
def log_to_file(
    logs_dir: str | pathlib.Path, run_id: str, settings: Mapping[str, str], what: str
) -> Iterator[pathlib.Path]:
    """Attach the daily log file for one step of a run; the first line names the run and its
    (masked) settings, the last one how long the step took."""
    handler = DailyLogFile(logs_dir, run_id)
    logger.addHandler(handler)
    started = datetime.now(UTC)
    try:
        _emit(
            logging.INFO,
            RUN,
            f"{what}: run {run_id} started; settings: " + " ".join(f"{k}={v}" for k, v in settings.items()),
        )
        yield handler.path(started)
    finally:
        _emit(logging.INFO, RUN, f"{what}: finished in {(datetime.now(UTC) - started).total_seconds():.1f}s")
        logger.removeHandler(handler)
        handler.close()
        with _file_lock:
            _told.pop(run_id, None)
