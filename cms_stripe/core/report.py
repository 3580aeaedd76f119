"""The run report: one model of what a sync run did, built from the metadata the run recorded.

The JSON file (`reports/migration-report-TIMESTAMP.json`), the console's closing table and the
figures the UI shows are all read from a `RunReport`, and a `RunReport` is only ever built from the
metadata the assets recorded, so the three cannot disagree. No Dagster import: callers hand over
plain (asset, partition, metadata) records.
"""

from __future__ import annotations

import json
import pathlib
import resource
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cms_stripe.constants import (
    ARCHIVED,
    CREATED,
    DRIFT,
    DRY_RUN,
    DUPLICATES,
    ERRORS,
    ERRORS_BY_CODE,
    ERRORS_BY_SEVERITY,
    FAILED,
    MATCHED,
    MISSING,
    NOOP,
    PER_PARTITION_KEYS,
    PLAN_PATH,
    PLAN_QUARANTINED,
    PLANNED,
    PRODUCTS_PER_SECOND,
    QUARANTINED_ROWS,
    RATE_LIMITED,
    RAW_ASSET,
    REACTIVATED,
    RECONCILIATION_ASSET,
    REPRICED,
    RESUMED,
    ROWS,
    SKIPPED,
    SKIPPED_EXISTING,
    STRIPE_ASSET,
    STRIPE_CALLS,
    STRIPE_WRITES,
    UPDATED,
    VALID_ROWS,
    VALIDATED_ASSET,
    WRITTEN_BACK,
)
from cms_stripe.core.error_codes import ErrorCode, code_for_exception, validation_code
from cms_stripe.core.errors import Severity
from cms_stripe.core.mapping import RowIssue

SEVERITIES = tuple(s.value for s in Severity)
# LOW < MEDIUM < HIGH < CRITICAL: the enum's declaration order.
_SEVERITY_ORDER = {s: n for n, s in enumerate(Severity)}
FIRST_ERRORS = 50
REPORT_PREFIX = "migration-report-"


@dataclass(frozen=True)
class Materialized:
    """One materialization of one asset (partition) with its metadata as plain values."""

    asset: str
    partition: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class ErrorItem:
    cms_id: str
    code: str
    severity: str
    reason: str

    def line(self) -> str:
        return f"{self.severity} {self.code} {self.cms_id}: {self.reason}"


def quarantine_errors(quarantined: Iterable[tuple[str, Sequence[RowIssue]]]) -> list[ErrorItem]:
    """A quarantined row (cms id, issues) is one error: the code and severity of its worst issue,
    every issue in the reason."""
    out = []
    for cms_id, issues in quarantined:
        if not issues:
            continue
        worst = max(issues, key=lambda i: _SEVERITY_ORDER[i.severity])
        reasons = "; ".join(f"{i.field}: {i.message}" for i in issues)
        out.append(ErrorItem(str(cms_id), validation_code(worst.code), worst.severity.value, reasons[:500]))
    return out


def failure_error(cms_id: str, code: str | None, severity: str | None, reason: str | None) -> ErrorItem:
    return ErrorItem(
        cms_id, code or ErrorCode.INTERNAL_ERROR.value, severity or Severity.HIGH.value, (reason or "")[:500]
    )


def writeback_errors(failed: Iterable[tuple[str, str]]) -> list[ErrorItem]:
    """CMS write-backs that failed after their Stripe writes (their message starts with the CMS code)."""
    return [
        ErrorItem(cms_id, ErrorCode.CMS_WRITE_BACK.value, Severity.HIGH.value, message[:500])
        for cms_id, message in failed
    ]


def exception_error(cms_id: str, exc: BaseException, severity: Severity) -> ErrorItem:
    return ErrorItem(cms_id, code_for_exception(exc).value, severity.value, str(exc)[:500])


def error_metadata(errors: Sequence[ErrorItem]) -> dict[str, Any]:
    """Plain values for the ERRORS / ERRORS_BY_CODE / ERRORS_BY_SEVERITY metadata keys."""
    return {
        ERRORS: [asdict(e) for e in errors[:FIRST_ERRORS]],
        ERRORS_BY_CODE: dict(sorted(Counter(e.code for e in errors).items())),
        ERRORS_BY_SEVERITY: {s: n for s in SEVERITIES if (n := sum(1 for e in errors if e.severity == s))},
    }


@dataclass
class Counts:
    rows_read: int = 0
    valid: int = 0
    quarantined: int = 0
    created: int = 0
    updated: int = 0
    repriced: int = 0
    archived: int = 0
    reactivated: int = 0
    unchanged: int = 0
    failed: int = 0
    # Already in sync before the run (MIGRATION_SKIP_EXISTING) or finished by an earlier attempt.
    skipped: int = 0
    # Planned but never attempted: the run stopped on a CRITICAL error first.
    not_attempted: int = 0
    written_back: int = 0

    @property
    def attempted(self) -> int:
        return (
            self.created
            + self.updated
            + self.repriced
            + self.archived
            + self.reactivated
            + self.unchanged
            + self.failed
        )

    @property
    def succeeded(self) -> int:
        return self.attempted - self.failed


@dataclass
class RunReport:
    run_id: str
    command: str
    status: str
    dry_run: bool
    strategy: str | None = None
    partitions: str | None = None
    product_ids: list[str] = field(default_factory=list)
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float = 0.0
    counts: Counts = field(default_factory=Counts)
    # Products the plan covered (a dry run's answer to "what would it do").
    planned: int = 0
    success_rate: float = 1.0
    products_per_second: float = 0.0
    stripe_calls: int = 0
    stripe_writes: int = 0
    stripe_429s: int = 0
    errors_by_severity: dict[str, int] = field(default_factory=dict)
    errors_by_code: dict[str, int] = field(default_factory=dict)
    first_errors: list[ErrorItem] = field(default_factory=list)
    reconciliation: dict[str, int] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    cpu_time_s: float = 0.0
    plan_path: str | None = None
    log_path: str | None = None
    report_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"]["attempted"] = self.counts.attempted
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        values = dict(data)
        counts = dict(values.pop("counts", {}))
        counts.pop("attempted", None)
        errors = [ErrorItem(**e) for e in values.pop("first_errors", [])]
        known = set(cls.__dataclass_fields__)
        return cls(counts=Counts(**counts), first_errors=errors, **{k: v for k, v in values.items() if k in known})

    def write(self, path: pathlib.Path) -> pathlib.Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.report_path = str(path)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)  # a reader never sees half a report
        return path


def report_path(reports_dir: str | pathlib.Path, at: datetime) -> pathlib.Path:
    """`reports/migration-report-20260115T143000Z.json`; a second report in the same second gets `-2`."""
    root = pathlib.Path(reports_dir)
    stem = f"{REPORT_PREFIX}{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    path, n = root / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = root / f"{stem}-{n}.json"
    return path


def find_report(reports_dir: str | pathlib.Path, run_id: str | None = None) -> pathlib.Path | None:
    """The newest report (of `run_id` when given) in `reports_dir`."""
    root = pathlib.Path(reports_dir)
    if not root.is_dir():
        return None
    for path in sorted(root.glob(f"{REPORT_PREFIX}*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if run_id is None:
            return path
        try:
            if json.loads(path.read_text()).get("run_id") == run_id:
                return path
        except (OSError, ValueError):
            continue
    return None


def resource_usage() -> tuple[float, float]:
    """(peak resident memory in MB, CPU seconds) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    peak = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return round(peak, 1), round(usage.ru_utime + usage.ru_stime, 2)


def _totals(records: Sequence[Materialized]) -> dict[str, Any]:
    """One asset's figures for the run: the partitions' counts (PER_PARTITION_KEYS) summed (numbers
    added, error lists joined, counts by code added); any other key taken once. Run-wide figures come
    from the asset's record without a partition (the run's observation, or a stopped step's failure),
    which carries no per-partition count, so nothing is counted twice."""
    out: dict[str, Any] = {}
    for record in records:
        for key, value in record.metadata.items():
            if key not in PER_PARTITION_KEYS:
                out[key] = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
            elif isinstance(value, list):
                out[key] = [*out.get(key, []), *value]
            elif isinstance(value, Mapping):
                merged = Counter(dict(out.get(key, {})))
                merged.update({str(k): int(v) for k, v in value.items()})
                out[key] = dict(merged)
            else:
                out[key] = value
    return out


def _error_item(data: Mapping[str, Any]) -> ErrorItem:
    return ErrorItem(**{k: str(data.get(k, "")) for k in ("cms_id", "code", "severity", "reason")})


def _int(meta: Mapping[str, Any], key: str) -> int:
    value = meta.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def build_report(
    records: Iterable[Materialized],
    *,
    run_id: str,
    command: str,
    status: str,
    strategy: str | None = None,
    partitions: str | None = None,
    product_ids: Sequence[str] = (),
    dry_run: bool | None = None,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    log_path: str | None = None,
) -> RunReport:
    """The report of one run from its materializations (the latest one per asset and partition)."""
    latest: dict[tuple[str, str | None], Materialized] = {}
    for record in records:
        latest[(record.asset, record.partition)] = record
    by_asset: dict[str, list[Materialized]] = {}
    for record in latest.values():
        by_asset.setdefault(record.asset, []).append(record)
    raw = _totals(by_asset.get(RAW_ASSET, []))
    validated = _totals(by_asset.get(VALIDATED_ASSET, []))
    synced = _totals(by_asset.get(STRIPE_ASSET, []))
    recon = _totals(by_asset.get(RECONCILIATION_ASSET, []))

    counts = Counts(
        rows_read=_int(raw, ROWS) or _int(validated, ROWS),
        valid=_int(validated, VALID_ROWS),
        quarantined=_int(validated, QUARANTINED_ROWS) + _int(synced, PLAN_QUARANTINED),
        created=_int(synced, CREATED),
        updated=_int(synced, UPDATED),
        repriced=_int(synced, REPRICED),
        archived=_int(synced, ARCHIVED),
        reactivated=_int(synced, REACTIVATED),
        unchanged=_int(synced, NOOP),
        failed=_int(synced, FAILED),
        skipped=_int(synced, SKIPPED_EXISTING) + _int(synced, RESUMED),
        not_attempted=_int(synced, SKIPPED),
        written_back=_int(synced, WRITTEN_BACK),
    )
    errors: list[Mapping[str, Any]] = []
    by_code: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    for meta in (validated, synced):
        errors += [e for e in meta.get(ERRORS) or [] if isinstance(e, Mapping)]
        by_code.update({str(k): int(v) for k, v in dict(meta.get(ERRORS_BY_CODE) or {}).items()})
        by_severity.update({str(k): int(v) for k, v in dict(meta.get(ERRORS_BY_SEVERITY) or {}).items()})

    duration = (ended_at - started_at).total_seconds() if started_at and ended_at else 0.0
    peak, cpu = resource_usage()
    if dry_run is None:
        dry_run = bool(synced.get(DRY_RUN, validated.get(DRY_RUN, True)))
    return RunReport(
        run_id=run_id,
        command=command,
        status=status,
        dry_run=dry_run,
        strategy=strategy,
        partitions=partitions,
        product_ids=list(product_ids),
        started_at=started_at.astimezone(UTC).isoformat() if started_at else None,
        ended_at=ended_at.astimezone(UTC).isoformat() if ended_at else None,
        duration_s=round(duration, 3),
        counts=counts,
        planned=_int(synced, PLANNED),
        success_rate=round(counts.succeeded / counts.attempted, 4) if counts.attempted else 1.0,
        # The sync's own rate (planning and applying), as the asset records it.
        products_per_second=float(synced.get(PRODUCTS_PER_SECOND) or 0.0),
        stripe_calls=_int(synced, STRIPE_CALLS),
        stripe_writes=_int(synced, STRIPE_WRITES),
        stripe_429s=_int(synced, RATE_LIMITED),
        errors_by_severity={s: by_severity[s] for s in SEVERITIES if by_severity[s]},
        errors_by_code=dict(sorted(by_code.items())),
        first_errors=[
            ErrorItem(**{k: str(e.get(k, "")) for k in ("cms_id", "code", "severity", "reason")}) for e in errors
        ][:FIRST_ERRORS],
        reconciliation={k: _int(recon, k) for k in (MATCHED, MISSING, DRIFT, DUPLICATES) if k in recon},
        peak_memory_mb=peak,
        cpu_time_s=cpu,
        plan_path=str(synced[PLAN_PATH]) if synced.get(PLAN_PATH) else None,
        log_path=log_path,
    )
