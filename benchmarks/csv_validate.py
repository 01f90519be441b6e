"""How fast ``validate_csv`` is next to a bare ``csv.reader`` loop, and its peak memory.

Run from the repository root::

    .venv/bin/python benchmarks/csv_validate.py [--rows 1000000] [--repeat 5]

The file is generated once into ``benchmarks/data/`` (git-ignored): hospitals with a
header, addresses with commas (so quoted), 10% without phone, 1% with an extension,
0.1% repeating an earlier hospital (in capitals: a duplicate_row warning). Every
measurement runs in a fresh interpreter, so peak RSS (``resource.getrusage``) is that
run's alone. The kinds take turns, round after round, and the best run of each is
reported, with wall and CPU time: a shared machine is noisy, and the load average
is printed so that a busy one shows. The ratio that decides is the median over
the rounds of bare loop and validation measured back to back.

Targets: validation at least 0.25x the bare loop's rows per second; peak RSS under 150 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).parent / "data"
TARGET_RATIO = 0.25
TARGET_RSS_MB = 150

CITIES = ["Springfield", "Riverside", "Franklin", "Greenville", "Bristol", "Clinton",
          "Fairview", "Salem", "Madison", "Georgetown", "Saint-Étienne", "München"]  # fmt: skip
KINDS = ["General Hospital", "Memorial Hospital", "Medical Center", "Regional Hospital",
         "Children's Hospital", "Community Hospital"]  # fmt: skip
STREETS = ["Main St", "Oak Avenue", "Maple Drive", "Cedar Lane", "Elm Street", "Lake Road"]
STATES = ["IL", "CA", "NY", "TX", "OH", "WA"]


def generate(path: Path, rows: int, seed: int = 20240601) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    earlier: list[list[str]] = []
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["name", "address", "phone"])
        for index in range(rows):
            if earlier and rng.random() < 0.001:
                name, address, phone = rng.choice(earlier)
                writer.writerow([name.upper(), address, phone])
                continue
            city = rng.choice(CITIES)
            name = f"{city} {rng.choice(KINDS)} {index}"
            address = (
                f"{rng.randint(1, 9999)} {rng.choice(STREETS)}, {city},"
                f" {rng.choice(STATES)} {rng.randint(10000, 99999)}"
            )
            phone = f"+1 ({rng.randint(200, 999)}) 555-{rng.randint(0, 9999):04d}"
            if index % 10 == 0:
                phone = ""
            elif index % 100 == 1:
                phone += f" ext {rng.randint(1, 999)}"
            row = [name, address, phone]
            writer.writerow(row)
            if index % 1000 == 0:
                earlier.append(row)
    partial.replace(path)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def measure(kind: str, path: Path) -> dict[str, float]:
    """Runs in the child: one measurement, printed as JSON."""
    if kind == "bare":
        wall, cpu = time.perf_counter(), time.process_time()
        rows = 0
        with path.open(newline="", encoding="utf-8") as file:
            for _ in csv.reader(file):
                rows += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows -= 1  # the header
    else:
        from hospital_bulk import CsvReader, validate_csv

        wall, cpu = time.perf_counter(), time.process_time()
        if kind == "validate":
            report = validate_csv(path)
        else:
            reader = CsvReader(path)
            for _ in reader:
                pass
            report = reader.report
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = report.total_rows
        if report.error_count:
            raise SystemExit(f"unexpected errors: {report.errors[:3]}")
    return {"wall": wall, "cpu": cpu, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def run_child(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


LABELS = {"bare": "bare csv.reader loop", "validate": "validate_csv", "reader": "CsvReader"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, path = args.measure
        print(json.dumps(measure(kind, Path(path))))
        return

    path = DATA / f"hospitals-{args.rows}.csv"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        generate(path, args.rows)
    print(f"file: {path} ({args.rows:,} data rows, {path.stat().st_size / 1e6:.1f} MB)")
    print(
        f"python {sys.version.split()[0]}; best of {args.repeat} runs, each in a fresh process;"
        f" load average before: {os.getloadavg()[0]:.2f}"
    )
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in LABELS}
    for _ in range(args.repeat):
        # Interleaved, so that a busy moment of the machine hits every kind alike.
        for kind in LABELS:
            runs[kind].append(run_child(kind, path))
    best = {kind: min(kind_runs, key=lambda run: run["wall"]) for kind, kind_runs in runs.items()}
    for kind, label in LABELS.items():
        result = best[kind]
        cpu = min(run["cpu"] for run in runs[kind])
        rss = max(run["peak_rss_mb"] for run in runs[kind])
        speeds = ", ".join(f"{run['rows'] / run['wall'] / 1000:,.0f}k" for run in runs[kind])
        print(
            f"{label:20} {result['rows'] / result['wall']:>10,.0f} rows/s"
            f" ({result['wall']:.2f} s wall, {cpu:.2f} s cpu)  peak RSS {rss:5.1f} MB"
            f"  [runs: {speeds}]"
        )
    ratio = best["bare"]["wall"] / best["validate"]["wall"]
    cpu_ratio = min(run["cpu"] for run in runs["bare"]) / min(
        run["cpu"] for run in runs["validate"]
    )
    rounds = [b["wall"] / v["wall"] for b, v in zip(runs["bare"], runs["validate"], strict=True)]
    median = statistics.median(rounds)
    # The verdict goes by the median round: a best-of favours the shorter job, which
    # is likelier to fit in a quiet moment of a shared machine.
    verdict = "ok" if median >= TARGET_RATIO else "BELOW TARGET"
    print(
        f"validate_csv / bare loop speed: {median:.2f}x median round"
        f" [rounds: {', '.join(f'{r:.2f}' for r in rounds)}]; {ratio:.2f}x best wall,"
        f" {cpu_ratio:.2f}x best cpu (target >= {TARGET_RATIO}x): {verdict}"
    )
    rss = max(run["peak_rss_mb"] for run in runs["validate"])
    verdict = "ok" if rss < TARGET_RSS_MB else "OVER TARGET"
    print(f"validate_csv peak RSS: {rss:.1f} MB (target < {TARGET_RSS_MB} MB): {verdict}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
