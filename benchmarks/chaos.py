"""A chaos run: the service killed and restarted at random against a faulty directory.

For ``--minutes``, a stand-in directory in chaos mode (``HOSPITAL_DIRECTORY_CHAOS``)
fails every kind of call at random, seeded: by default 10% each of 429s, 500s
before storing, 500s after storing, answers cut after storing, connections closed
unanswered, 3 s stalls (answered within the service's 4 s timeout), plus 2% of creates
held 6 s (they land after the service gave up on them), and 20 s outages taking 10% of
the time (one every 200 s or so). Meanwhile ``--jobs`` files of 20-200 rows, every
hospital name unique, are uploaded at random moments of the first 80% of the run
(``Prefer: respond-async``, an ``Idempotency-Key`` each, retried until accepted), and
``hospital-bulk serve`` (SQLite store in a temporary directory) is ``kill -9``-ed at
random moments, 5-45 s apart, and started again 0.5-5 s later; it resumes the jobs it
finds interrupted by itself. Jobs that end with errors are resumed
(``POST /hospitals/bulk/{id}/resume``) as they are seen.

Then the kills stop, the chaos is switched off and every job is driven to
``completed``. The check, against the stand-in's full listing (``GET /hospitals/``):
every row of every job is upstream exactly once (no duplicate, none missing), active,
with the id and batch its job reports; every upstream batch of every job is
activated and holds exactly that batch's rows; nothing else is upstream. Prints the
counts and exits 1 if any of that fails (the run's directory, with every log and
the job store, is then kept).

Run from the repository root (not part of the test suite)::

    .venv/bin/python benchmarks/chaos.py [--minutes 10] [--seed 1] [--jobs 40]
        [--chaos SPEC] [--latency 0.2] [--settle-minutes 20] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers start the stand-in

from tests.servers import UvicornServer, free_port  # noqa: E402  # after the path is set

DIRECTORY_APP = "hospital_bulk_standin.app:app"
#: 10% of each fault, 2% of creates held past the client's timeout, 10% of the time down.
DEFAULT_CHAOS = (
    "throttle=0.1,fail_before_storing=0.1,error_after_storing=0.1,"
    "fail_after_storing=0.1,not_sent=0.1,hold=0.1:3,hold=0.02:6,outage=0.1:20"
)
#: The service's read timeout: a 3 s stall (plus the latency) is answered in time, a
#: 6 s hold is not.
CLIENT_TIMEOUT = 4.0
LANDING_MARGIN = 5.0
LEASE_TTL = 5.0
#: Job states that need someone to resume them.
TO_RESUME = frozenset({"completed_with_errors", "failed", "cancelled"})
FAULT_WORDS = {
    "throttle": "429",
    "fail_before_storing": "500, not stored",
    "error_after_storing": "stored, then 500",
    "fail_after_storing": "stored, answer cut",
    "not_sent": "closed unanswered, not stored",
    "reject": "400",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the service, as a process to crash -----------------------------------------------


class Service:
    """``hospital-bulk serve`` in a process group of its own, its output appended to a log."""

    def __init__(self, env: dict[str, str], port: int, logfile: Path) -> None:
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.logfile = logfile
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.starts += 1
        command = [
            str(Path(sys.executable).with_name("hospital-bulk")),
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        with self.logfile.open("ab") as out:
            out.write(f"\n==== start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """kill -9 its process group."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.kills += 1
        with self.logfile.open("ab") as out:
            out.write(f"==== killed (-9) at {time.strftime('%H:%M:%S')}\n".encode())

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    async def wait_ready(self, http: httpx.AsyncClient, seconds: float = 60.0) -> None:
        with anyio.fail_after(seconds):
            while True:
                if not self.alive:
                    raise RuntimeError(f"the service exited: see {self.logfile}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz", timeout=2)).status_code == 200:
                        return
                await anyio.sleep(0.1)


# -- the jobs ---------------------------------------------------------------------------


@dataclass
class Job:
    number: int
    rows: list[tuple[str, str, str]]
    upload_at: float
    key: str
    batch_id: str | None = None
    state: str = "not uploaded"
    resumes: int = 0
    upload_attempts: int = 0
    body: dict[str, Any] = field(default_factory=dict)

    def csv(self) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["name", "address", "phone"])
        writer.writerows(self.rows)
        return out.getvalue().encode()


def plan_jobs(seed: int, count: int, seconds: float) -> list[Job]:
    rng = random.Random(f"jobs:{seed}")
    jobs = []
    for number in range(1, count + 1):
        size = rng.randint(20, 200)
        rows = [
            (
                f"Chaos {seed} Hospital {number:03d}-{row:03d}",
                f"{row} Chaos Road, Block {number}",
                f"555{number:03d}{row:04d}",
            )
            for row in range(1, size + 1)
        ]
        upload_at = 0.0 if number <= 2 else rng.uniform(0, 0.8 * seconds)
        jobs.append(Job(number, rows, upload_at, key=f"chaos-{seed}-{number}-{os.getpid()}"))
    return sorted(jobs, key=lambda job: job.upload_at)


@dataclass
class Run:
    service: Service
    http: httpx.AsyncClient
    jobs: list[Job]
    rng: random.Random
    started: float
    killing: bool = True
    resumes: int = 0
    conflicts: int = 0
    events: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:7.1f}s {message}")
        log(message)


async def upload(run: Run, job: Job) -> None:
    """Upload until accepted: a retry with the same key can never make a second job."""
    await anyio.sleep(max(0.0, job.upload_at - (time.monotonic() - run.started)))
    files = {"file": (f"chaos-{job.number:03d}.csv", job.csv(), "text/csv")}
    headers = {"Prefer": "respond-async", "Idempotency-Key": job.key}
    while True:
        job.upload_attempts += 1
        try:
            response = await run.http.post(
                "/hospitals/bulk", files=files, headers=headers, timeout=30
            )
        except httpx.TransportError:
            await anyio.sleep(0.5)
            continue
        if response.status_code in (200, 202):
            job.batch_id = response.json()["batch_id"]
            job.state = response.json()["state"]
            run.note(f"job {job.number} ({len(job.rows)} rows) uploaded: {job.batch_id}")
            return
        if response.status_code >= 500:
            await anyio.sleep(0.5)
            continue
        raise RuntimeError(f"upload of job {job.number}: {response.status_code} {response.text}")


async def killer(run: Run) -> None:
    """kill -9 the service at random moments and start it again after a short pause."""
    while run.killing:
        await anyio.sleep(run.rng.uniform(5, 45))
        if not run.killing:
            break
        run.service.kill()
        pause = run.rng.uniform(0.5, 5)
        run.note(f"kill -9 #{run.service.kills}; restart in {pause:.1f} s")
        await anyio.sleep(pause)
        run.service.start()
        await run.service.wait_ready(run.http)


async def job_states(run: Run) -> dict[str, str] | None:
    """Every job's state by id, or ``None`` when the service does not answer now."""
    states: dict[str, str] = {}
    offset: int | None = 0
    try:
        while offset is not None:
            response = await run.http.get(
                "/hospitals/bulk", params={"limit": 500, "offset": offset}, timeout=10
            )
            if response.status_code != 200:
                return None
            page = response.json()
            states.update({job["batch_id"]: job["state"] for job in page["jobs"]})
            offset = page["next_offset"]
    except httpx.TransportError:
        return None
    return states


async def resume(run: Run, job: Job) -> None:
    try:
        response = await run.http.post(
            f"/hospitals/bulk/{job.batch_id}/resume",
            headers={"Prefer": "respond-async"},
            timeout=30,
        )
    except httpx.TransportError:
        return
    if response.status_code in (200, 202):
        job.resumes += 1
        run.resumes += 1
        run.note(f"job {job.number} was {job.state}: resumed")
    elif response.status_code == 409:
        run.conflicts += 1
    elif response.status_code < 500:
        raise RuntimeError(f"resume of job {job.number}: {response.status_code} {response.text}")


async def tend(run: Run, until: float, *, patience: float, settle: bool) -> bool:
    """Every few seconds, read the jobs' states and resume those that need it: ended
    with errors at once; ``interrupted`` or ``pending`` (which a restarted service
    takes up by itself) only when left so for ``patience`` seconds.

    Returns at ``until``, or with ``settle`` as soon as every job is uploaded and
    ``completed``: whether they all are.
    """
    waiting: dict[str, float] = {}
    while True:
        states = await job_states(run) if run.service.alive else None
        if states is not None:
            now = time.monotonic()
            for job in run.jobs:
                if job.batch_id is None:
                    continue
                job.state = states.get(job.batch_id, "missing")
                if job.state in ("interrupted", "pending"):
                    since = waiting.setdefault(job.batch_id, now)
                    if now - since > patience:
                        await resume(run, job)
                        waiting.pop(job.batch_id, None)
                else:
                    waiting.pop(job.batch_id, None)
                if job.state in TO_RESUME:
                    await resume(run, job)
        done = all(job.batch_id is not None and job.state == "completed" for job in run.jobs)
        if (settle and done) or time.monotonic() >= until:
            return done
        await anyio.sleep(3)


# -- the check --------------------------------------------------------------------------


async def held_creates_landed(upstream: httpx.AsyncClient) -> None:
    """Return once the stand-in has no create in flight (a hold may still run)."""
    while True:
        if not (await upstream.get("/_standin/stats")).json()["creates_in_flight"]:
            return
        await anyio.sleep(0.5)


async def verify(run: Run, upstream: httpx.AsyncClient) -> Counter[str]:
    """Every row upstream exactly once, active, where its job says; nothing else."""
    hospitals = (await upstream.get("/hospitals/", timeout=60)).json()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for hospital in hospitals:
        by_name.setdefault(hospital["name"], []).append(hospital)
    by_batch: dict[str | None, list[dict[str, Any]]] = {}
    for hospital in hospitals:
        by_batch.setdefault(hospital["creation_batch_id"], []).append(hospital)
    counts: Counter[str] = Counter()
    names: set[str] = set()
    for job in run.jobs:
        response = await run.http.get(f"/bulk/status/{job.batch_id}", timeout=60)
        body = job.body = response.json()
        counts["jobs not completed"] += body["state"] != "completed"
        rows = {row["name"]: row for row in body["rows"]}
        batch_rows: Counter[str] = Counter()
        for name, address, phone in job.rows:
            names.add(name)
            row = rows.get(name)
            if row is None:
                counts["rows lost by the service"] += 1
                continue
            counts["rows not activated (job)"] += row["state"] != "activated"
            batch_rows[row["creation_batch_id"]] += 1
            copies = by_name.get(name, [])
            if not copies:
                counts["missing"] += 1
                continue
            counts["duplicates"] += len(copies) - 1
            counts["inactive"] += sum(not copy["active"] for copy in copies)
            copy = copies[0]
            if len(copies) == 1 and (
                copy["id"] != row["hospital_id"]
                or copy["creation_batch_id"] != row["creation_batch_id"]
                or (copy["address"], copy["phone"]) != (address, phone)
            ):
                counts["rows not as the job says"] += 1
        for batch_id in body["creation_batch_ids"]:
            members = by_batch.get(batch_id, [])
            if not members or not all(member["active"] for member in members):
                counts["batches not activated"] += 1
            if len(members) != batch_rows[batch_id]:
                counts["batches not as the job says"] += 1
    counts["extra"] = sum(hospital["name"] not in names for hospital in hospitals)
    counts["upstream"] = len(hospitals)
    return counts


# -- the run ----------------------------------------------------------------------------


async def chaos_run(args: argparse.Namespace, workdir: Path) -> int:
    seconds = args.minutes * 60
    standin_env = {
        "HOSPITAL_DIRECTORY_LATENCY": str(args.latency),
        "HOSPITAL_DIRECTORY_CREATE_LIMIT": "0",
        "HOSPITAL_DIRECTORY_OTHER_LIMIT": "0",
        "HOSPITAL_DIRECTORY_ADMIN": "1",
        "HOSPITAL_DIRECTORY_CHAOS": args.chaos,
        "HOSPITAL_DIRECTORY_CHAOS_SEED": str(args.seed),
    }
    standin_args = ["--log-level", "warning", "--timeout-keep-alive", "30"]
    directory = UvicornServer(DIRECTORY_APP, env=standin_env, args=standin_args)
    service_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_")},
        "HOSPITAL_API_BASE": directory.url,
        "HOSPITAL_BULK_STORE": f"sqlite:///{workdir / 'jobs.sqlite3'}",
        "HOSPITAL_BULK_RATE_LIMIT": "0",
        "HOSPITAL_BULK_CONCURRENCY": "20",
        "HOSPITAL_BULK_MAX_JOBS": "4",
        "HOSPITAL_BULK_DIRECTORY_TIMEOUT": str(CLIENT_TIMEOUT),
        "HOSPITAL_BULK_LANDING_MARGIN": str(LANDING_MARGIN),
        "HOSPITAL_BULK_LEASE_TTL": str(LEASE_TTL),
        "HOSPITAL_BULK_RESUME_ON_START": "true",
        "HOSPITAL_BULK_TAKE_OVER": "false",
        "HOSPITAL_BULK_OUTAGE_DEADLINE": "600",
        "HOSPITAL_BULK_GRACEFUL_TIMEOUT": "5",
        "HOSPITAL_BULK_SYNC_TIMEOUT": "60",
    }
    service = Service(service_env, free_port(), workdir / "service.log")
    jobs = plan_jobs(args.seed, args.jobs, seconds)
    rows = sum(len(job.rows) for job in jobs)
    log(
        f"chaos run: {args.minutes:g} min, seed {args.seed}, {len(jobs)} jobs, {rows} rows;"
        f" directory chaos {args.chaos}; work in {workdir}"
    )
    with directory:
        (workdir / "standin-url").write_text(directory.url)
        try:
            async with (
                httpx.AsyncClient(base_url=service.url, timeout=30) as http,
                httpx.AsyncClient(base_url=directory.url, timeout=30) as upstream,
            ):
                service.start()
                await service.wait_ready(http)
                run = Run(
                    service, http, jobs, random.Random(f"kills:{args.seed}"), time.monotonic()
                )
                async with anyio.create_task_group() as uploads:
                    for job in jobs:
                        uploads.start_soon(upload, run, job)
                    async with anyio.create_task_group() as kills:
                        kills.start_soon(killer, run)
                        await tend(run, run.started + seconds, patience=60, settle=False)
                        run.killing = False
                        kills.cancel_scope.cancel()
                    run.note("time is up: no more kills")
                    if not service.alive:
                        service.start()
                    await service.wait_ready(http)
                chaos_elapsed = time.monotonic() - run.started
                if not args.chaos_while_settling:
                    await upstream.delete("/_standin/chaos")
                    run.note("chaos off; settling")
                settle_started = time.monotonic()
                settled = await tend(
                    run, settle_started + args.settle_minutes * 60, patience=20, settle=True
                )
                settle_elapsed = time.monotonic() - settle_started
                await upstream.delete("/_standin/chaos")
                # Let anything still held upstream land before the listing.
                with anyio.fail_after(120):
                    await held_creates_landed(upstream)
                stats = (await upstream.get("/_standin/stats")).json()
                counts = await verify(run, upstream)
                elapsed = time.monotonic() - run.started
        finally:
            service.stop()
            (workdir / "standin.log").write_text(directory.output())
    (workdir / "events.log").write_text("\n".join(run.events) + "\n")
    (workdir / "jobs.json").write_text(
        json.dumps(
            [
                {
                    "job": job.number,
                    "batch_id": job.batch_id,
                    "rows": len(job.rows),
                    "state": job.state,
                    "resumes": job.resumes,
                    "upload_attempts": job.upload_attempts,
                    "runs": job.body.get("runs"),
                }
                for job in jobs
            ],
            indent=1,
        )
    )
    return report(args, run, stats, counts, settled, chaos_elapsed, settle_elapsed, elapsed)


def report(
    args: argparse.Namespace,
    run: Run,
    stats: dict[str, Any],
    counts: Counter[str],
    settled: bool,
    chaos_elapsed: float,
    settle_elapsed: float,
    elapsed: float,
) -> int:
    chaos: dict[str, int] = stats["chaos"]
    long_holds = sum(
        n
        for kind, n in chaos.items()
        if kind.startswith("hold:") and float(kind[5:]) > CLIENT_TIMEOUT
    )
    failures = {
        "duplicates": counts["duplicates"],
        "missing": counts["missing"],
        "inactive": counts["inactive"],
        "extra": counts["extra"],
        "rows lost by the service": counts["rows lost by the service"],
        "rows not as the job says": counts["rows not as the job says"],
        "rows not activated (job)": counts["rows not activated (job)"],
        "batches not activated": counts["batches not activated"],
        "batches not as the job says": counts["batches not as the job says"],
        "jobs not completed": counts["jobs not completed"],
    }
    rows = sum(len(job.rows) for job in run.jobs)

    def line(label: str, value: object) -> None:
        print(f"{label + ':':<31} {value}" if len(label) >= 30 else f"{label + ':':<31}{value}")

    print()
    print(f"chaos run, seed {args.seed}: {args.minutes:g} min of chaos and kills")
    line("directory chaos", f"{args.chaos} (latency {args.latency:g} s, no rate limit)")
    line(
        "service",
        f"timeout {CLIENT_TIMEOUT:g} s, landing margin {LANDING_MARGIN:g} s,"
        f" lease {LEASE_TTL:g} s, unpaced, 20 calls in flight, SQLite",
    )
    line("jobs", len(run.jobs))
    line("rows", rows)
    line("hospitals upstream", counts["upstream"])
    calls = stats["calls"]
    line("calls to the directory", sum(calls.values()))
    line("  by operation", ", ".join(f"{op} {n}" for op, n in sorted(calls.items())))
    print("faults injected:")
    for kind in sorted(chaos):
        if kind != "outage":
            what = FAULT_WORDS.get(kind) or f"create held {kind.partition(':')[2]} s"
            line(f"  {kind} ({what})", chaos[kind])
    line("  total", sum(n for k, n in chaos.items() if k != "outage"))
    line(f"holds > client timeout ({CLIENT_TIMEOUT:g} s)", long_holds)
    line(f"outages ({outage_text(args.chaos)})", chaos.get("outage", 0))
    line("kills (-9)", run.service.kills)
    line("service starts", run.service.starts)
    line("resumes asked", f"{run.resumes} ({run.conflicts} refused: running)")
    line("settled", "yes" if settled else "NO")
    for name, value in failures.items():
        line(name, value)
    line(
        "elapsed",
        f"{elapsed:.0f} s (chaos {chaos_elapsed:.0f} s, settling {settle_elapsed:.0f} s)",
    )
    ok = settled and not any(failures.values())
    line("result", "every invariant held" if ok else "FAILED")
    return 0 if ok else 1


def outage_text(spec: str) -> str:
    for part in spec.split(","):
        key, _, value = part.strip().partition("=")
        if key == "outage":
            share, _, secs = value.partition(":")
            return f"{secs or 20} s, {float(share):.0%} of the time"
    return "none"


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[tuple[Path, list[bool]]]:
    path = Path(tempfile.mkdtemp(prefix="hospital-bulk-chaos-"))
    failed = [False]
    try:
        yield path, failed
    except BaseException:
        failed[0] = True
        raise
    finally:
        if keep or failed[0]:
            print(f"logs, job store and events kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="of chaos and kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=40, help="files of 20-200 rows")
    parser.add_argument("--chaos", default=DEFAULT_CHAOS, help="HOSPITAL_DIRECTORY_CHAOS")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per create")
    parser.add_argument("--settle-minutes", type=float, default=20.0, help="at most")
    parser.add_argument(
        "--chaos-while-settling", action="store_true", help="keep the faults on to the end"
    )
    parser.add_argument("--keep", action="store_true", help="keep logs and store")
    args = parser.parse_args()
    with workdir(args.keep) as (path, failed):
        status = anyio.run(chaos_run, args, path)
        failed[0] = status != 0
    sys.exit(status)


if __name__ == "__main__":
    main()
