"""The service's settings, read from the environment, and how they become a processor.

The command line builds the same settings from its flags: one mapping for both.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Annotated
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hospital_bulk import (
    DEFAULT_BASE_URL,
    UPSTREAM_LIMITS,
    BulkProcessor,
    CsvOptions,
    DirectoryClient,
    DirectoryTimeouts,
    HttpDirectoryClient,
    LocalRateGate,
    ProcessorSettings,
    RateLimit,
    RetryPolicy,
)
from hospital_bulk.stores import default_store_url, open_store

#: ``HOSPITAL_API_BASE=embedded`` runs an in-process fake directory instead of a remote one.
EMBEDDED = "embedded"


class ServiceSettings(BaseSettings):
    """Every knob of the service; each field names its environment variable.

    Build one in code with the field names (``ServiceSettings(store="memory://")``)
    or let the environment fill it (``HOSPITAL_BULK_STORE=memory://``).
    """

    model_config = SettingsConfigDict(
        env_prefix="HOSPITAL_BULK_", populate_by_name=True, extra="ignore", frozen=True
    )

    #: ``HOSPITAL_API_BASE``: the Hospital Directory, or ``embedded`` for a fake in memory.
    api_base: Annotated[str, Field(validation_alias="HOSPITAL_API_BASE")] = DEFAULT_BASE_URL
    #: ``HOSPITAL_BULK_EMBEDDED_LATENCY``: seconds each create takes in the embedded fake.
    embedded_latency: Annotated[float, Field(ge=0, le=60)] = 0.5
    #: ``HOSPITAL_BULK_STORE``: ``memory://``, ``sqlite:///PATH`` or ``redis://HOST``.
    store: str = Field(default_factory=default_store_url, min_length=1)
    #: ``HOSPITAL_BULK_RATE_LIMIT``: creates per window; 0 sends as fast as allowed.
    rate_limit: Annotated[int, Field(ge=0)] = UPSTREAM_LIMITS.create.count
    #: ``HOSPITAL_BULK_RATE_WINDOW``: the rate window, in seconds.
    rate_window: Annotated[float, Field(gt=0)] = UPSTREAM_LIMITS.create.window
    #: ``HOSPITAL_BULK_CONCURRENCY``: calls in flight at once, all jobs together.
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 20
    #: ``HOSPITAL_BULK_MAX_JOBS``: jobs run at once by this process; more wait, queued.
    max_jobs: Annotated[int, Field(ge=1, le=1000)] = ProcessorSettings().max_jobs
    #: ``HOSPITAL_BULK_MAX_ROWS``: data rows a file may hold.
    max_rows: Annotated[int, Field(ge=1)] = 10_000
    #: ``HOSPITAL_BULK_MAX_UPLOAD_BYTES``: the largest file accepted (413 above it).
    max_upload_bytes: Annotated[int, Field(ge=1)] = 10 * 1024 * 1024
    #: ``HOSPITAL_BULK_SYNC_TIMEOUT``: seconds a request waits for its job before a 202.
    sync_timeout: Annotated[float, Field(ge=0)] = 300.0
    #: ``HOSPITAL_BULK_LEASE_TTL``: seconds a running job's lease lasts unless renewed;
    #: once it expires, another process declares the job interrupted.
    lease_ttl: Annotated[float, Field(gt=0)] = 30.0
    #: ``HOSPITAL_BULK_DIRECTORY_TIMEOUT``: seconds one call may wait for the directory's
    #: answer (its cold start takes 20-30 s, a create 5 s).
    directory_timeout: Annotated[float, Field(gt=0)] = DirectoryTimeouts().read
    #: ``HOSPITAL_BULK_LANDING_MARGIN``: seconds past that timeout during which an
    #: unanswered create may still land: its row is not sent again before.
    landing_margin: Annotated[float, Field(ge=0)] = 30.0
    #: ``HOSPITAL_BULK_OUTAGE_DEADLINE``: seconds a job waits for an unavailable
    #: directory before it stops, ``interrupted`` (resumable).
    outage_deadline: Annotated[float, Field(gt=0)] = RetryPolicy().outage_deadline
    #: ``HOSPITAL_BULK_TAKE_OVER``: resume the jobs a dead process left running. Unset:
    #: on with Redis (other processes live on to finish them), off otherwise (a
    #: restarted process shows them ``interrupted``, to resume when you choose).
    take_over: bool | None = None
    #: ``HOSPITAL_BULK_RESUME_ON_START``: at start-up, start the jobs nobody runs: those
    #: left ``interrupted`` (a shutdown, a crash) and those left ``pending`` by a
    #: process that died before starting them. Off: they wait for a resume.
    resume_on_start: bool = True
    #: ``HOSPITAL_BULK_GRACEFUL_TIMEOUT``: at shutdown, seconds the creates in flight
    #: (and the requests open) get to finish; what is still running then is stopped
    #: and recorded ``interrupted``.
    graceful_timeout: Annotated[float, Field(ge=0, le=3600)] = 30.0

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        if value == EMBEDDED:
            return value
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"use an absolute http(s) URL or {EMBEDDED!r}")
        return value

    @property
    def embedded(self) -> bool:
        return self.api_base == EMBEDDED

    @property
    def takes_over(self) -> bool:
        if self.take_over is not None:
            return self.take_over
        return urlsplit(self.store).scheme in ("redis", "rediss", "unix")

    def processor_settings(self) -> ProcessorSettings:
        """The engine's settings: 0 creates per window means unpaced, every call."""
        paced = self.rate_limit > 0
        return ProcessorSettings(
            concurrency=self.concurrency,
            max_jobs=self.max_jobs,
            create_limit=RateLimit(self.rate_limit, self.rate_window) if paced else None,
            other_limit=UPSTREAM_LIMITS.other if paced else None,
            csv=CsvOptions(max_rows=self.max_rows),
            lease_ttl=self.lease_ttl,
            retry=RetryPolicy(
                # In this process, the embedded directory's creates are over when answered.
                landing_horizon=0.0
                if self.embedded
                else self.directory_timeout + self.landing_margin,
                outage_deadline=self.outage_deadline,
            ),
        )

    def directory(self) -> DirectoryClient:
        """A client of the directory; ``embedded``: a stand-in in this process, with the
        real directory's limits. Whoever calls this closes the client."""
        if self.embedded:
            from hospital_bulk.testing import FakeDirectory  # only the embedded mode needs it

            return FakeDirectory(
                latency=self.embedded_latency,
                create_limit=UPSTREAM_LIMITS.create,
                other_limit=UPSTREAM_LIMITS.other,
            )
        # One pooled client for every job: room for the creates plus lists and activations.
        return HttpDirectoryClient(
            self.api_base,
            timeouts=DirectoryTimeouts(read=self.directory_timeout),
            max_connections=self.concurrency + 10,
        )


async def open_processor(
    settings: ServiceSettings, stack: AsyncExitStack, processor: ProcessorSettings | None = None
) -> BulkProcessor:
    """The processor these settings describe, on its directory and store; ``stack``
    closes them. ``processor`` overrides the engine's settings."""
    client = settings.directory()
    stack.push_async_callback(client.aclose)
    store = await open_store(settings.store)
    stack.push_async_callback(store.aclose)
    engine = processor or settings.processor_settings()
    # An embedded directory is this process's alone, its limits too: pacing shared
    # through the store with other processes (and their directories) would only slow it.
    gate = None
    if settings.embedded:
        gate = LocalRateGate(
            create_limit=engine.create_limit,
            other_limit=engine.other_limit,
            unpaced_pause=engine.unpaced_throttle_pause,
        )
    directory = EMBEDDED if settings.embedded else None  # None: the client's base URL
    return BulkProcessor(client, store, engine, rate_gate=gate, directory=directory)
