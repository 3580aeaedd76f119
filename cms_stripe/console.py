"""The operator's console of `cms-stripe`: a header, progress, row errors as they happen, a closing
table. Dagster's own event stream, beta warnings and banners stay out of it unless `-v` asks.

Progress reaches the console through the `cms_stripe.run` logger (core.runlog): the run executes in
this process, so a handler here sees what the sync emits. On a terminal a rich progress bar is drawn;
otherwise the tool we replace's line `Progress: 45.2% (452/1000) | ...` is printed at each checkpoint.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from rich import box
from rich.console import Console as RichConsole
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from cms_stripe.constants import RUN_LOGGER
from cms_stripe.core import runlog
from cms_stripe.core.report import RunReport
from cms_stripe.core.settings import mask_secret, mask_url, scrub

# Row errors shown on the console; the rest are in the log file and the report.
MAX_ROW_LINES = 10
QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
SEVERITY_STYLE = {"LOW": "dim", "MEDIUM": "yellow", "HIGH": "red", "CRITICAL": "bold red"}


def quiet_dagster() -> None:
    """No beta/preview warnings and no 'instance configuration' notices from Dagster itself."""
    import dagster as dg

    for name in ("BetaWarning", "PreviewWarning", "SupersessionWarning"):
        category = getattr(dg, name, None)
        if isinstance(category, type) and issubclass(category, Warning):
            warnings.filterwarnings("ignore", category=category)
    logging.getLogger("dagster").setLevel(logging.ERROR)


def logger_config(verbose: bool) -> dict[str, Any]:
    """Run config for the job's console logger: Dagster's event stream only with -v. The events are
    recorded in the instance either way (the UI shows them)."""
    return {} if verbose else {"loggers": QUIET_LOGGERS}


class _Handler(logging.Handler):
    def __init__(self, console: OperatorConsole) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.on_record(record)
        except Exception:
            self.handleError(record)


class OperatorConsole:
    def __init__(self, stream: IO[str] | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.verbose = verbose
        # Off a terminal rich would guess 80 columns and wrap the table; give it room instead.
        self.rich = RichConsole(file=self.stream, width=None if self.tty else 110, highlight=False, soft_wrap=False)
        self._progress: Progress | None = None
        self._task: Any = None
        self._rows = 0

    def print(self, text: str = "", style: str | None = None) -> None:
        target = self._progress.console if self._progress is not None else self.rich
        # soft_wrap: a long reason stays one line (a log reader greps it), the terminal wraps it.
        target.print(scrub(text), style=style, markup=False, highlight=False, soft_wrap=True)

    def header(self, command: str, settings: Any, scope: str) -> None:
        from cms_stripe.stripe.limits import LimitModel

        limits = LimitModel.for_key(settings.stripe_secret_key or "", settings)
        mode = "LIVE" if settings.live_key else "test"
        base = mask_url(settings.stripe_api_base) if settings.stripe_api_base else "api.stripe.com"
        if settings.cms_database_url:
            cms = f"SQL {mask_url(settings.cms_database_url)}"
        else:
            key = mask_secret(settings.supabase_service_role_key)
            cms = f"Supabase REST {mask_url(settings.supabase_url)} (key {key})"
        self.print(f"cms-stripe {command}: {scope}", style="bold")
        self.print(
            f"  Stripe: {mode} mode, key {mask_secret(settings.stripe_secret_key)}, {base}; "
            f"limits {limits.global_rps:g}/s global, {limits.endpoint_rps:g}/s per endpoint"
        )
        self.print(f"  CMS: {cms}")

    @contextmanager
    def live(self) -> Iterator[None]:
        """Show what the run emits while it runs."""
        handler = _Handler(self)
        logger = logging.getLogger(RUN_LOGGER)
        logger.addHandler(handler)
        try:
            if self.tty and not self.verbose:
                self._progress = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("ok {task.fields[success]} failed {task.fields[failed]}"),
                    TextColumn("{task.fields[rate]}/s"),
                    TimeRemainingColumn(),
                    console=self.rich,
                    transient=False,
                )
                self._progress.start()
            yield
        finally:
            logger.removeHandler(handler)
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            if self._rows > MAX_ROW_LINES:
                self.print(f"… {self._rows - MAX_ROW_LINES} more row errors: see the log file and the report")

    def on_record(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "cms_kind", None)
        if kind == runlog.PROGRESS:
            self._on_progress(record)
        elif kind == runlog.ROW:
            severity = getattr(record, "cms_severity", "")
            # CRITICAL rows stop the run: always shown, whatever the quarantine printed before them.
            if severity != "CRITICAL":
                self._rows += 1
            if severity == "CRITICAL" or self._rows <= MAX_ROW_LINES:
                self.print(record.getMessage(), style=SEVERITY_STYLE.get(severity))
        elif kind == runlog.NOTE and not self.verbose:  # with -v Dagster's stream carries the notes
            self.print(record.getMessage(), style="yellow" if record.levelno >= logging.WARNING else None)

    def _on_progress(self, record: logging.LogRecord) -> None:
        if self._progress is None:
            if not self.verbose:  # with -v Dagster's stream already carries the line
                self.print(record.getMessage())
            return
        done, total = getattr(record, "cms_done", 0), getattr(record, "cms_total", 0)
        rate = record.getMessage().split("Rate: ", 1)[-1].split("/s", 1)[0]
        success, failed = getattr(record, "cms_success", 0), getattr(record, "cms_failed", 0)
        if self._task is None:
            self._task = self._progress.add_task("Syncing", total=total, rate=rate, success=success, failed=failed)
        self._progress.update(self._task, completed=done, total=total, rate=rate, success=success, failed=failed)

    def summary(self, report: RunReport) -> None:
        c = report.counts
        table = _table(title="summary")
        table.add_column("figure")
        table.add_column("value", justify="right")
        rows: list[tuple[str, Any]] = [
            ("rows read", c.rows_read),
            ("planned" + (" (dry run: nothing written)" if report.dry_run else ""), report.planned),
            ("valid", c.valid),
            ("quarantined", c.quarantined),
            ("created", c.created),
            ("updated", c.updated),
            ("repriced", c.repriced),
            ("archived", c.archived),
            ("reactivated", c.reactivated),
            ("unchanged", c.unchanged),
            ("failed", c.failed),
            ("skipped (already in sync)", c.skipped),
        ]
        if c.not_attempted:
            rows.append(("not attempted (run stopped)", c.not_attempted))
        rows += [
            ("success rate", f"{report.success_rate:.1%}"),
            ("products/s", f"{report.products_per_second:g}"),
            ("Stripe calls / writes / 429s", f"{report.stripe_calls} / {report.stripe_writes} / {report.stripe_429s}"),
            ("duration", f"{report.duration_s:.1f}s"),
            ("peak memory / CPU", f"{report.peak_memory_mb:g} MB / {report.cpu_time_s:g}s"),
        ]
        for label, value in rows:
            table.add_row(Text(label), Text(str(value)))
        self.rich.print(table)
        if report.errors_by_code:
            errors = _table(title="errors")
            errors.add_column("code")
            errors.add_column("count", justify="right")
            for code, n in report.errors_by_code.items():
                errors.add_row(Text(code), Text(str(n)))
            severities = ", ".join(f"{s} {n}" for s, n in report.errors_by_severity.items())
            errors.add_row(Text("by severity"), Text(severities))
            self.rich.print(errors)
        self.print(f"run {report.run_id}: {report.status}", style="green" if report.status == "success" else "red")
        for label, path in (("plan", report.plan_path), ("log", report.log_path), ("report", report.report_path)):
            if path:
                self.print(f"{label}: {path}")


def render_report(report: RunReport, console: OperatorConsole, first_errors: int = 20) -> None:
    """`cms-stripe report`: the closing table plus the first failures with their CMS ids."""
    scope = report.partitions or (",".join(report.product_ids) if report.product_ids else "-")
    console.print(
        f"{report.command} · {report.strategy or '-'} · {scope} · {'dry run' if report.dry_run else 'APPLY'} · "
        f"{report.started_at or '?'} → {report.ended_at or '?'}"
    )
    console.summary(report)
    if report.first_errors:
        table = _table(title=f"first {min(first_errors, len(report.first_errors))} errors")
        for column in ("cms id", "code", "severity", "reason"):
            table.add_column(column)
        for e in report.first_errors[:first_errors]:
            table.add_row(*(Text(v) for v in (e.cms_id, e.code, e.severity, e.reason[:80])))
        console.rich.print(table)


def render_status(
    counts: Mapping[str, int], oldest_pending: str | None, last_run: str, console: OperatorConsole
) -> None:
    table = _table(title="CMS sync state")
    table.add_column("sync_status")
    table.add_column("rows", justify="right")
    for status, n in counts.items():
        table.add_row(Text(status), Text(str(n)))
    console.rich.print(table)
    console.print(f"oldest pending row updated at: {oldest_pending or '-'}")
    console.print(f"last run: {last_run}")


def _table(title: str) -> Table:
    # Compact borders: the closing summary of a 600-row run fits a few dozen lines.
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
