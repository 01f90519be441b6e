"""Views of a running job's events: a rich progress bar, or JSON lines."""

from __future__ import annotations

import collections
import datetime as dt
import math
import time
from types import TracebackType
from typing import Any, Protocol, Self

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from hospital_bulk import Event, EventType, JobState, RateLimit

from .output import print_json, to_data


class JobView(Protocol):
    """What the runner tells whoever watches."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def event(self, event: Event) -> None: ...

    def cancelling(self, hard: bool) -> None: ...


class JsonLinesView:
    """Each event as one JSON line, as it happens."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def event(self, event: Event) -> None:
        print_json(to_data(event))

    def cancelling(self, hard: bool) -> None:
        kind = "interrupt" if hard else "cancel"
        print_json({"type": "cli.cancel_requested", "mode": kind})


class _DoneColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = int(task.total or 0)
        width = len(str(total))
        return Text(f"{int(task.completed):>{width}}/{total}", style="progress.download")


class _FailedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        failed = int(task.fields.get("failed", 0))
        unknown = int(task.fields.get("unknown", 0))
        text = Text(f"{failed} failed", style="red" if failed else "dim")
        if unknown:
            text.append(f" {unknown} unknown", style="yellow")
        return text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = float(task.fields.get("rate", 0.0))
        return Text(f"{rate:.1f}/s", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """Time left at the current creation rate (rich's own guess cannot see pacing)."""

    def render(self, task: Task) -> Text:
        rate = float(task.fields.get("rate", 0.0))
        left = (task.total or 0) - task.completed - int(task.fields.get("unknown", 0))
        if task.finished or left <= 0:
            return Text("ETA 0:00:00", style="progress.remaining")
        if rate <= 0:
            return Text("ETA -:--:--", style="progress.remaining")
        seconds = int(left / rate)
        return Text(f"ETA {dt.timedelta(seconds=seconds)}", style="progress.remaining")


class _PacingColumn(ProgressColumn):
    """What the run waits for, if anything: the directory, a 429's pause, the rate
    window; else how it is paced."""

    def __init__(self, limit: RateLimit | None) -> None:
        super().__init__()
        if limit is None:
            self.paced = "unpaced"
        else:
            self.paced = f"paced {limit.count}/{limit.window:g}s"

    def render(self, task: Task) -> Text:
        now = time.monotonic()
        if (probe := task.fields.get("probe_at")) is not None:
            next_try = max(0, math.ceil(float(probe) - now))
            return Text(f"directory unavailable: next try in {next_try} s", style="bold red")
        if (left := float(task.fields.get("throttled_until", 0.0)) - now) > 0:
            return Text(f"throttled {math.ceil(left)}s", style="bold yellow")
        if (left := float(task.fields.get("window_until", 0.0)) - now) >= 1:
            return Text(f"rate window: {math.ceil(left)} s", style="yellow")
        return Text(self.paced, style="dim")


_PHASES = {
    JobState.PENDING: "queued",
    JobState.RUNNING: "creating",
    JobState.ACTIVATING: "activating",
    JobState.WAITING_FOR_DIRECTORY: "waiting",
}


class ProgressBarView:
    """A progress bar updated in place; in a log (not a terminal) only its last state."""

    def __init__(self, total: int, limit: RateLimit | None, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            _DoneColumn(),
            _FailedColumn(),
            _RateColumn(),
            _EtaColumn(),
            _PacingColumn(limit),
            console=console,
            refresh_per_second=8,
            expand=True,
        )
        self.task: TaskID = self.progress.add_task(self._description("starting"), total=total)
        self.limit = limit
        # When the latest creates were answered: once a window's worth came within it,
        # the next waits for the window to slide (an estimate: sends precede answers).
        self._created: collections.deque[float] = collections.deque(
            maxlen=limit.count if limit is not None and limit.count > 0 else 1
        )

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def _description(self, phase: str) -> str:
        # The header above names the file: the bar's line keeps its width for numbers.
        return f"[cyan]{phase:<10}[/]"

    def event(self, event: Event) -> None:
        progress = event.progress
        fields: dict[str, Any] = {"failed": progress.failed, "unknown": progress.unknown}
        description = None
        now = time.monotonic()
        if event.type is EventType.THROTTLE_CHANGED:
            fields["throttled_until"] = now + (event.delay or 0.0)
        elif event.type is EventType.DIRECTORY_UNAVAILABLE:
            fields["probe_at"] = now + (event.delay or 0.0)
        elif event.type is EventType.DIRECTORY_AVAILABLE:
            fields["probe_at"] = None
        elif event.type is EventType.ROW_CREATED and self.limit is not None:
            self._created.append(now)
            if len(self._created) == self._created.maxlen:
                fields["window_until"] = self._created[0] + self.limit.window
        if event.type is not EventType.JOB_ACCEPTED:
            # The rate is this run's: replayed acceptance carries none worth showing.
            fields["rate"] = progress.rate
        if event.state is not None:
            phase = _PHASES.get(event.state, str(event.state))
            description = self._description(phase)
        self.progress.update(
            self.task,
            completed=progress.done,
            total=progress.total,
            description=description,
            **fields,
        )

    def cancelling(self, hard: bool) -> None:
        phase = "stopping" if hard else "cancelling"
        self.progress.update(self.task, description=self._description(phase))
        if hard:
            message = "Stopping now: rows in flight will be checked on resume."
        else:
            message = (
                "Cancelling: no new creates; waiting for those in flight."
                " Press Ctrl-C again to stop at once."
            )
        self.progress.console.print(f"[yellow]{message}[/]")
