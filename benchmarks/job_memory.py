"""Memory a running job holds, and the service's peak under many uploads at once.

    python benchmarks/job_memory.py            # one 10,000-row job: bytes held while it runs
    python benchmarks/job_memory.py --uploads 40   # 40 uploads at once to the service: peak RSS

The first measure uses tracemalloc: what the process allocated for the job once it
runs (its rows loaded, its tasks started), with a SQLite store so that the store's
copy lives on disk. The second posts N files of 10,000 rows to the service (an
embedded directory, SQLite, ``max_jobs`` at its default) and reports the peak RSS
while they run. Numbers go to stdout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import tracemalloc
from pathlib import Path

import anyio
import httpx

from hospital_bulk import BulkProcessor, JobState, ProcessorSettings
from hospital_bulk.stores.sqlite import SqliteStore
from hospital_bulk.testing import FakeDirectory

ROWS = 10_000


def csv_file(rows: int, prefix: str = "Hospital") -> bytes:
    lines = ["name,address,phone"]
    lines += [f"{prefix} {n},{n} Main Street,555-{n:04d}" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


async def one_job(directory: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{directory / 'jobs.sqlite3'}")
    # Slow creates and no pacing: the job is surely running when measured.
    fake = FakeDirectory(latency=5.0)
    bulk = BulkProcessor(fake, store, ProcessorSettings(create_limit=None, other_limit=None))
    job = await bulk.submit(csv_file(ROWS))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    async with anyio.create_task_group() as group:
        run = await bulk.start(job.id, group)
        while (await bulk.get_job(job.id)).state is not JobState.RUNNING:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        await anyio.sleep(1.0)
        gc.collect()
        during = tracemalloc.take_snapshot()
        run.cancel(now=True)
    held = sum(stat.size_diff for stat in during.compare_to(before, "filename"))
    print(f"a running {ROWS:,}-row job holds {held / 1e6:.2f} MB")
    top = during.compare_to(before, "lineno")[:5]
    for stat in top:
        print(f"  {stat.size_diff / 1e6:6.2f} MB  {stat.traceback[0]}")
    await store.aclose()


async def many_uploads(count: int, directory: Path) -> None:
    from hospital_bulk_fastapi import ServiceSettings, create_app

    settings = ServiceSettings(
        api_base="embedded",
        embedded_latency=5.0,
        store=f"sqlite:///{directory / 'jobs.sqlite3'}",
        rate_limit=0,
        sync_timeout=0,
        max_upload_bytes=10 * 1024 * 1024,
    )
    app = create_app(settings)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as api:

            async def upload(n: int) -> None:
                files = {"file": (f"f{n}.csv", csv_file(ROWS, f"U{n}"), "text/csv")}
                answer = await api.post("/hospitals/bulk", files=files)
                answer.raise_for_status()

            async with anyio.create_task_group() as group:
                for n in range(count):
                    group.start_soon(upload, n)
            await anyio.sleep(3)
            jobs = (await api.get("/hospitals/bulk", params={"limit": count})).json()
            rss_running = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            now = rss_now()
            print(f"peak RSS with every upload accepted: {rss_running:.0f} MB, now {now:.0f} MB")
            states: dict[str, int] = {}
            for job in jobs.get("jobs", jobs) if isinstance(jobs, dict) else jobs:
                states[job["state"]] = states.get(job["state"], 0) + 1
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} uploads of {ROWS:,} rows: states {states}")
    print(f"RSS before {rss_before:.0f} MB, peak {rss_peak:.0f} MB")


def rss_now() -> float:
    """The process's resident memory now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.uploads:
            anyio.run(many_uploads, args.uploads, Path(tmp))
        else:
            anyio.run(one_job, Path(tmp))


if __name__ == "__main__":
    main()
