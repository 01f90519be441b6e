"""Settings of the engine: how it treats the upstream."""

from __future__ import annotations

import attrs

from ._models import UPSTREAM_LIMITS, RateLimit
from .csv import CsvOptions


@attrs.frozen
class RetryPolicy:
    """Retries of calls that provably did not land (not sent, throttled)."""

    #: Attempts per call, the first included; ``timeout`` bounds them all (seconds).
    attempts: int = 10
    timeout: float = 900.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: How many times a batch is listed and its missing rows re-sent in one run.
    reconcile_rounds: int = 3
    #: Seconds from sending a create until it can no longer land: a create left
    #: unanswered (timeout, 5xx, cut answer) may still be stored until then, so its
    #: row is never sent again, nor its batch listed to decide that, before. The
    #: client's read timeout plus a margin (the default client waits 60 s).
    landing_horizon: float = 90.0
    #: Consecutive calls failing for want of a directory (refused, timed out, 5xx)
    #: after which it counts as unavailable: calls then wait while one probe at a
    #: time asks it, with backoff up to ``probe_max`` seconds between probes.
    outage_after: int = 3
    probe_max: float = 15.0
    #: Seconds a call waits for an unavailable directory before its job gives up
    #: and ends ``interrupted`` (resumable); no row fails because of an outage.
    outage_deadline: float = 600.0


@attrs.frozen
class ProcessorSettings:
    """How the processor treats the upstream. Defaults match the real directory."""

    concurrency: int = 20
    #: Jobs run at once by one processor; more wait, ``queued``, in the order started.
    max_jobs: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: Creates per window; ``None`` or a count of 0 means unpaced.
    create_limit: RateLimit | None = UPSTREAM_LIMITS.create
    #: Every other call (list, activate, delete).
    other_limit: RateLimit | None = UPSTREAM_LIMITS.other
    #: Pause after a 429 without Retry-After when no rate limit is known (unpaced).
    unpaced_throttle_pause: float = 1.0
    #: Rows per upstream batch: at most the upstream's cap.
    batch_size: int = attrs.field(
        default=UPSTREAM_LIMITS.batch_cap,
        validator=[attrs.validators.ge(1), attrs.validators.le(UPSTREAM_LIMITS.batch_cap)],
    )
    csv: CsvOptions = CsvOptions(max_rows=10_000)
    retry: RetryPolicy = RetryPolicy()
    #: How often a watcher re-checks a quiet job (seconds).
    watch_poll: float = 1.0
    #: A running job's lease: renewed every third of it; once expired, another
    #: process may declare the job interrupted and take it over.
    lease_ttl: float = 30.0
