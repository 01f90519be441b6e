"""Global pacing through Redis, with real processes (run by hand, not a test).

Two service processes share one Redis; each gets a job of ``--rows`` rows (uploaded at
the same moment, asynchronously) against the stand-in directory allowing ``--limit``
creates per ``--window`` seconds to all of them together (they share one address). The
services are paced to that same limit, 40 creates in flight each. Run from the
repository root, with a Redis at hand (an empty database of it is used, then cleaned)::

    .venv/bin/python benchmarks/global_pacing.py [--redis redis://127.0.0.1:6379]
        [--rows 100] [--limit 40] [--window 5] [--latency 0.05] [--standin-keep-alive 30]

Prints the time from the first upload to both jobs finished (the later ``finished_at``),
the floor — 2 x 100 creates at 40 per 5 s need five windows: the fifth opens at 20 s,
plus one latency for its creates — the ratio floor / elapsed, and the 429s the
directory answered. Target: within 10% of the floor (elapsed <= 1.1 x floor), no 429.

As in the test (``tests/adapters/fastapi/test_durability.py``), the stand-in keeps idle
connections open 30 s. With uvicorn's own 5 s (``--standin-keep-alive 5``), the
services' pooled connections, idle about one window (5.1 s) between bursts, are closed
by the server just as the client reuses them: those creates are lost, found missing
and sent again in a later window, and the late first arrival of a window can cost 429s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers start and drive the processes

from tests.adapters.fastapi.processes import (  # noqa: E402  # after the path is set
    DIRECTORY_APP,
    SERVICE_APP,
    claimed_redis_db,
    directory_env,
    finished,
    service_env,
    standin_client,
    standin_stats,
    upload_async,
)
from tests.servers import UvicornServer  # noqa: E402  # after the path is set

from hospital_bulk import HospitalRecord  # noqa: E402  # after the path is set

TARGET = 1.1


def rows_of(prefix: str, count: int) -> list[HospitalRecord]:
    return [
        HospitalRecord(f"{prefix} Hospital {n}", f"{n} {prefix} Road", f"555-{n:04d}")
        for n in range(1, count + 1)
    ]


async def measure(
    services: list[UvicornServer], directory: UvicornServer, rows: int
) -> dict[str, Any]:
    jobs: dict[str, tuple[httpx.AsyncClient, str]] = {}
    async with standin_client(directory.url) as upstream:
        apis = [httpx.AsyncClient(base_url=s.url, timeout=120) for s in services]
        try:

            async def submit(api: httpx.AsyncClient, prefix: str) -> None:
                jobs[prefix] = (api, await upload_async(api, rows_of(prefix, rows)))

            started = dt.datetime.now(dt.UTC)
            clock = time.monotonic()
            async with anyio.create_task_group() as group:
                for api, prefix in zip(apis, ("North", "South"), strict=True):
                    group.start_soon(submit, api, prefix)
            bodies = [
                await finished(api, job, seconds=300, interval=0.25) for api, job in jobs.values()
            ]
            polled = time.monotonic() - clock
            stats = await standin_stats(upstream)
        finally:
            for api in apis:
                await api.aclose()
    ended = max(dt.datetime.fromisoformat(body["finished_at"]) for body in bodies)
    return {
        "states": [body["state"] for body in bodies],
        "resent": sum(row["attempts"] > 1 for body in bodies for row in body["rows"]),
        "elapsed": (ended - started).total_seconds(),
        "polled": polled,
        "stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="a Redis server")
    parser.add_argument("--rows", type=int, default=100, help="rows of each of the two jobs")
    parser.add_argument("--limit", type=int, default=40, help="creates per window")
    parser.add_argument("--window", type=float, default=5.0, help="seconds")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per create")
    parser.add_argument(
        "--standin-keep-alive",
        type=float,
        default=30.0,
        help="seconds the stand-in keeps idle connections open (uvicorn's own default: 5)",
    )
    args = parser.parse_args()

    creates = 2 * args.rows
    floor = (math.ceil(creates / args.limit) - 1) * args.window + args.latency
    limit = f"{args.limit}/{args.window:g}"
    standin = directory_env(latency=args.latency, create_limit=limit, other_limit="50/60")
    standin_args = ["--timeout-keep-alive", f"{args.standin_keep_alive:g}"]
    with (
        UvicornServer(DIRECTORY_APP, env=standin, args=standin_args) as directory,
        claimed_redis_db(args.redis) as store,
    ):
        env = service_env(
            directory.url,
            store,
            rate_limit=args.limit,
            rate_window=args.window,
            concurrency=40,
            take_over=True,
        )
        with UvicornServer(SERVICE_APP, env=env) as a, UvicornServer(SERVICE_APP, env=env) as b:
            result = anyio.run(measure, [a, b], directory, args.rows)

    elapsed = result["elapsed"]
    stats = result["stats"]
    print(f"2 services on one Redis, a {args.rows}-row job each, uploaded together")
    print(
        f"directory: {args.limit} creates per {args.window:g} s, {args.latency:g} s per create;"
        " services paced to the same limit"
    )
    print(f"the stand-in keeps idle connections open {args.standin_keep_alive:g} s")
    print(f"job states:                               {', '.join(result['states'])}")
    print(f"elapsed, first upload -> both finished:   {elapsed:.2f} s")
    print(f"  (seen by polling status:                {result['polled']:.2f} s)")
    print(f"floor:                                    {floor:.2f} s")
    print(f"floor / elapsed:                          {floor / elapsed:.3f}")
    print(f"429s answered by the directory:           {stats['throttled']}")
    print(f"creates answered by the directory:        {stats['calls'].get('create', 0)}")
    print(f"most creates in flight at once:           {stats['max_creates_in_flight']}")
    print(f"rows sent more than once:                 {result['resent']}")
    met = elapsed <= TARGET * floor and stats["throttled"] == 0
    print(
        f"target: elapsed <= {TARGET:g} x floor = {TARGET * floor:.2f} s, no 429: "
        + ("met" if met else "NOT met")
    )


if __name__ == "__main__":
    main()
