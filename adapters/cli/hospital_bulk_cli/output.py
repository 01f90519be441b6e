"""How results look: rich tables for people, one JSON object per line for machines."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hospital_bulk import (
    Finding,
    Job,
    JobSnapshot,
    JobSummary,
    RowOutcome,
    RowStatus,
    RowSummary,
    Severity,
    ValidationReport,
)

#: Problem rows shown under a summary; the failed-rows file and `status --rows` have them all.
SHOWN_ROWS = 15

STATE_STYLES = {
    "completed": "green",
    "completed_with_errors": "yellow",
    "failed": "red",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "running": "cyan",
    "activating": "cyan",
    "waiting_for_directory": "bold red",
    "pending": "dim",
    "deleted": "dim",
}
STATUS_STYLES = {
    RowStatus.CREATED_AND_ACTIVATED: "green",
    RowStatus.CREATED: "yellow",
    RowStatus.FAILED: "red",
}


def stdout() -> Console:
    # Made per call: tests swap sys.stdout, and rich reads it when the console is made.
    return Console(highlight=False)


# -- JSON ---------------------------------------------------------------------------


def _plain(_: object, __: object, value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def to_data(value: Any) -> dict[str, Any]:
    """An attrs value as JSON-ready data: times ISO-8601, UUIDs and enums as strings."""
    return attrs.asdict(value, value_serializer=_plain)


def report_data(report: ValidationReport) -> dict[str, Any]:
    return {"valid": report.valid, **to_data(report)}


def print_json(data: object) -> None:
    """One compact JSON document on one line of stdout, flushed at once (for CI logs).

    When the reader goes away (``| head``), the rest is dropped: the job still finishes.
    """
    try:
        print(json.dumps(data, separators=(",", ":")), flush=True)
    except BrokenPipeError:
        # What the Python docs advise: point stdout at devnull so exit does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# -- validation ---------------------------------------------------------------------


def print_report(report: ValidationReport, name: str, *, console: Console) -> None:
    """The counts, then the errors and the warnings as tables."""
    verdict = "[green]valid[/]" if report.valid else "[bold red]invalid[/]"
    console.print(
        f"{escape(name)}: {verdict} — {report.total_rows} row(s), {report.valid_rows} valid,"
        f" {report.error_count} error(s), {report.warning_count} warning(s)"
    )
    for title, findings, count, style in (
        ("Errors", report.errors, report.error_count, "red"),
        ("Warnings", report.warnings, report.warning_count, "yellow"),
    ):
        if findings:
            console.print(findings_table(title, findings, style))
        if count > len(findings):
            console.print(f"[dim]… {count - len(findings)} more {title.lower()} not listed[/]")


def findings_table(title: str, findings: Sequence[Finding], style: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, title_style=style)
    table.add_column("row", justify="right")
    table.add_column("line", justify="right")
    table.add_column("column")
    table.add_column("code", style=style)
    table.add_column("message", overflow="fold")
    for finding in findings:
        table.add_row(
            _cell(finding.row),
            _cell(finding.line),
            escape(finding.column or ""),
            finding.code.value,
            escape(finding.message),
            style="yellow" if finding.severity is Severity.WARNING else None,
        )
    return table


# -- jobs ---------------------------------------------------------------------------


def state_text(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'white')}]{state}[/]"


#: How each kind of row reads in a summary, in the order shown.
_OUTCOMES = (
    ("activated", "created and activated", "green"),
    ("created", "created, not activated", "yellow"),
    ("failed", "failed", "red"),
    ("uncertain", "may have landed (resume checks)", "yellow"),
    ("pending", "not sent yet", "yellow"),
)


def _outcome(row: RowOutcome) -> str:
    if row.may_have_landed:
        return "uncertain"
    return str(row.state)


def summary_table(snapshot: JobSnapshot) -> Table:
    """How a job ended: one line per kind of row outcome that any row has."""
    job, summary = snapshot.job, snapshot.summary()
    counts = collections.Counter(_outcome(row) for row in snapshot.rows)
    table = Table(title="Summary", title_justify="left", box=box.ROUNDED, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("job", job.id)
    if job.file_name:
        table.add_row("file", escape(job.file_name))
    table.add_row("state", state_text(job.state))
    table.add_row("hospitals", str(job.total_rows))
    for outcome, label, style in _OUTCOMES:
        always = outcome in ("activated", "failed")
        if counts[outcome] or always:
            shown = style if counts[outcome] or outcome == "activated" else "green"
            table.add_row(label, f"[{shown}]{counts[outcome]}[/]")
    table.add_row("batch activated", "yes" if summary.batch_activated else "no")
    if len(job.creation_batch_ids) > 1:
        table.add_row("upstream batches", str(len(job.creation_batch_ids)))
    table.add_row("time", f"{summary.processing_time_seconds:.1f} s")
    return table


def rows_table(
    rows: Sequence[RowSummary], *, title: str = "Rows", limit: int | None = None
) -> Table:
    shown = rows if limit is None else rows[:limit]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("row", justify="right")
    table.add_column("name", overflow="fold")
    table.add_column("status")
    table.add_column("id", justify="right")
    table.add_column("error", overflow="fold")
    for row in shown:
        style = STATUS_STYLES.get(row.status, "white")
        error = f"{row.error_code}: {row.error}" if row.error_code else (row.error or "")
        table.add_row(
            str(row.row),
            escape(row.name),
            f"[{style}]{row.status}[/]",
            _cell(row.hospital_id),
            escape(error),
        )
    if limit is not None and len(rows) > limit:
        table.caption = f"… and {len(rows) - limit} more"
    return table


def problem_rows(summary: JobSummary) -> list[RowSummary]:
    """Rows not activated: the failed ones first, then those created but waiting."""
    rows = [row for row in summary.hospitals if row.status is not RowStatus.CREATED_AND_ACTIVATED]
    return sorted(rows, key=lambda row: (row.status is not RowStatus.FAILED, row.row))


def jobs_table(jobs: Sequence[Job], *, width: int) -> Table:
    """One job a line; the file name only where the terminal has room for it."""
    with_file = width >= 110
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    table.add_column("job", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("active", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    if with_file:
        table.add_column("file", overflow="fold")
    for job in jobs:
        progress = job.progress
        cells = [
            job.id,
            state_text(job.state),
            f"{progress.activated}/{job.total_rows}",
            str(progress.failed + progress.unknown),
            job.updated_at.astimezone().strftime("%m-%d %H:%M"),
        ]
        if with_file:
            cells.append(escape(job.file_name or ""))
        table.add_row(*cells)
    return table


def job_table(job: Job) -> Table:
    """Everything the store knows about a job, one fact a line."""
    progress = job.progress
    table = Table(title="Job", title_justify="left", box=box.ROUNDED, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", job.id)
    table.add_row("state", state_text(job.state))
    if job.file_name:
        table.add_row("file", escape(job.file_name))
    table.add_row("rows", str(job.total_rows))
    table.add_row(
        "progress",
        f"{progress.created} created, {progress.activated} activated, {progress.failed} failed"
        + (f", {progress.unknown} unknown" if progress.unknown else ""),
    )
    table.add_row("upstream batches", ", ".join(str(batch) for batch in job.creation_batch_ids))
    table.add_row("created", _time(job.created_at))
    if job.started_at is not None:
        table.add_row("last run started", _time(job.started_at))
    if job.finished_at is not None:
        table.add_row("last run ended", _time(job.finished_at))
    table.add_row("runs", str(job.runs))
    if job.owner is not None:
        table.add_row("run by", escape(job.owner))
    return table


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: int | None) -> str:
    return "" if value is None else str(value)
