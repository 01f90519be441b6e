"""Which rate gate the service's processor paces with (issue 10, item 4)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from hospital_bulk import LocalRateGate
from hospital_bulk.stores.sqlite import SqliteRateGate
from hospital_bulk_fastapi import ServiceSettings
from hospital_bulk_fastapi.settings import open_processor

pytestmark = pytest.mark.anyio


async def test_an_embedded_directory_is_paced_in_memory_a_real_one_through_the_store(
    tmp_path: Path,
) -> None:
    """A real directory on a SQLite store paces through the file, with every process on
    it; the embedded directory is the process's own, and so is its pacing."""
    store = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    gates = {}
    for api in ("http://directory.test:9000", "embedded"):
        async with AsyncExitStack() as stack:
            processor = await open_processor(ServiceSettings(api_base=api, store=store), stack)
            gates[api] = type(processor.calls.pacer.gate)

    assert {"http://directory.test:9000": SqliteRateGate, "embedded": LocalRateGate} == gates
