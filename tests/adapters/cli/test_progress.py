"""The progress bar's columns, fed events directly (the other tests see only its end)."""

from __future__ import annotations

import datetime as dt

from rich.console import Console

from hospital_bulk import Event, EventType, JobState, Progress, RateLimit
from hospital_bulk_cli.progress import ProgressBarView


def event(
    kind: EventType,
    progress: Progress,
    *,
    state: JobState | None = None,
    delay: float | None = None,
) -> Event:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return Event(kind, progress, state=state, delay=delay, job_id="job", seq=1, at=at)


def shown(view: ProgressBarView) -> str:
    console = view.progress.console
    console.print(view.progress.get_renderable())
    return console.export_text()


def test_the_bar_shows_done_failed_rate_eta_and_pacing() -> None:
    """Rows done of the total, failed ones, the rate, the time left at that rate, the limit."""
    view = ProgressBarView(30, RateLimit(30, 60.0), Console(record=True, width=120))
    progress = Progress(total=30, created=9, failed=1, rate=2.5)

    view.event(event(EventType.JOB_STATE_CHANGED, progress, state=JobState.RUNNING))

    line = shown(view)
    assert "creating" in line
    assert "10/30" in line
    assert "1 failed" in line
    assert "2.5/s" in line
    assert "ETA 0:00:08" in line
    assert "paced 30/60s" in line


def test_a_429_shows_the_pause_then_the_pacing_again() -> None:
    """throttle.changed with a delay: "throttled Ns" while it lasts; 0 lifts it."""
    view = ProgressBarView(30, None, Console(record=True, width=120))
    progress = Progress(total=30, created=3)

    view.event(event(EventType.THROTTLE_CHANGED, progress, delay=12.0))
    throttled = shown(view)
    view.event(event(EventType.THROTTLE_CHANGED, progress, delay=0.0))
    lifted = shown(view)

    assert "throttled 12s" in throttled
    assert "unpaced" in lifted
    assert "throttled" not in lifted


def test_an_unavailable_directory_shows_the_next_try_then_goes() -> None:
    """directory.unavailable: the phase says waiting and the bar when the next probe
    goes out; directory.available lifts it."""
    view = ProgressBarView(30, RateLimit(30, 60.0), Console(record=True, width=140))
    progress = Progress(total=30, created=3)

    view.event(event(EventType.JOB_STATE_CHANGED, progress, state=JobState.WAITING_FOR_DIRECTORY))
    view.event(event(EventType.DIRECTORY_UNAVAILABLE, progress, delay=8.0))
    down = shown(view)
    view.event(event(EventType.DIRECTORY_AVAILABLE, progress))
    view.event(event(EventType.JOB_STATE_CHANGED, progress, state=JobState.RUNNING))
    back = shown(view)

    assert "waiting" in down
    assert "directory unavailable: next try in 8 s" in down
    assert "unavailable" not in back
    assert "creating" in back


def test_a_full_rate_window_shows_how_long_it_lasts() -> None:
    """A window's worth of creates answered within it: the bar says the rate window
    holds the next ones back, and for about how long."""
    view = ProgressBarView(30, RateLimit(3, 60.0), Console(record=True, width=140))

    for created in (1, 2, 3):
        view.event(event(EventType.ROW_CREATED, Progress(total=30, created=created)))

    assert "rate window: 60 s" in shown(view)
