"""Run the benchmarks and print (or write) ``benchmarks/RESULTS.md``.

    python -m benchmarks            # everything: about 15 minutes on 2 cores
    python -m benchmarks --quick    # small sizes, short runs: a smoke test
    python -m benchmarks --write    # also write benchmarks/RESULTS.md
    python -m benchmarks --profile  # pyinstrument profiles of the storing variants

Every figure is measured in the same run as its baseline and reported as a
ratio too. The server part needs ``wrk`` (Debian package) and gunicorn; the
PostgreSQL variants a server (``--database-url``, or ``BENCH_DATABASE_URL`` /
``POSWEB_TEST_DATABASE_URL``); the Celery ones ``redis-server``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import os
import pathlib
import platform
import shutil
import sqlite3
import subprocess
import sys
import typing as t

from . import apps
from . import log_page
from . import measure

RESULTS = pathlib.Path(__file__).parent / "RESULTS.md"
PROFILE = pathlib.Path(__file__).parent / "PROFILE.md"
PROFILES = pathlib.Path(__file__).parent / "profiles"

#: Measured in process (no server needed).
IN_PROCESS = ["bare", "handwritten", "posweb", "floor_sqlite", "posweb_sqlite_worker",
              "posweb_sqlite_inline"]  # fmt: skip
#: Under gunicorn, per kind of worker; ``{store}`` is each store available.
SERVERS = {
    "sync workers (`gunicorn -w 2`)": (
        ["-w", "2"],
        ["bare", "handwritten", "posweb", "floor_{store}", "posweb_{store}_worker",
         "posweb_{store}_inline", "posweb_{store}_celery"],
    ),
    "threaded workers (`gunicorn -w 2 --threads 8`)": (
        ["-w", "2", "--threads", "8"],
        ["bare", "floor_{store}", "posweb_{store}_worker", "posweb_{store}_inline"],
    ),
}  # fmt: skip


def machine() -> list[str]:
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor(),
    )
    packages = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in (
            "flask",
            "werkzeug",
            "marshmallow",
            "blinker",
            "sqlalchemy",
            "gunicorn",
            "celery",
            "psycopg",
        )  # fmt: skip
    )
    wrk = shutil.which("wrk")
    wrk_version = (
        subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        if wrk
        else "not installed"
    )
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {packages}",
        f"- Load generator: {wrk_version.strip()}",
    ]


def progress(message: str) -> None:
    """What the run is doing, on stderr (the report goes to stdout)."""
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


#: The issues' targets: (label, key in the figures, comparison, bound, unit).
TARGETS = [
    ("No inbox, requests/s vs the hand-written route (gunicorn -w 2)",
     "2:posweb/handwritten", ">=", 0.95, "x"),
    ("SQLite inbox, `worker` mode, requests/s vs its durable floor (gunicorn -w 2)",
     "2:posweb_sqlite_worker/floor", ">=", 0.75, "x"),
    ("SQLite inbox, `inline` mode, requests/s vs its durable floor (gunicorn -w 2)",
     "2:posweb_sqlite_inline/floor", ">=", 0.65, "x"),
    ("PostgreSQL inbox, `worker` mode, requests/s vs its durable floor (gunicorn -w 2)",
     "2:posweb_postgresql_worker/floor", ">=", 0.75, "x"),
    ("PostgreSQL inbox, `inline` mode, requests/s vs its durable floor (gunicorn -w 2)",
     "2:posweb_postgresql_inline/floor", ">=", 0.65, "x"),
    ("Celery mode web tier, SQLite, vs its durable floor (gunicorn -w 2)",
     "2:posweb_sqlite_celery/floor", ">=", 0.60, "x"),
    ("Celery mode web tier, PostgreSQL, vs its durable floor (gunicorn -w 2)",
     "2:posweb_postgresql_celery/floor", ">=", 0.60, "x"),
    ("Drain, 2 Celery workers vs 2 `flask posweb worker`, SQLite",
     "drain:sqlite:ratio", ">=", 1.0, "x"),
    ("Drain, 2 Celery workers vs 2 `flask posweb worker`, PostgreSQL",
     "drain:postgresql:ratio", ">=", 1.0, "x"),
    ("1,000 merchants vs one, requests/s, SQLite `worker` (gunicorn -w 2)",
     "merchants:sqlite", ">=", 0.95, "x"),
    ("1,000 merchants vs one, requests/s, PostgreSQL `worker` (gunicorn -w 2)",
     "merchants:postgresql", ">=", 0.95, "x"),
    ("Quiet merchants' dispatch wait, p99, one merchant flooding vs none, SQLite",
     "flood:sqlite", "<=", 2.0, "x"),
    ("Quiet merchants' dispatch wait, p99, one merchant flooding vs none, PostgreSQL",
     "flood:postgresql", "<=", 2.0, "x"),
    ("Validation of a 1,000-line invoice", "validation_1000_ms", "<=", 20, " ms"),
    ("Time per added line, 5,000 lines vs 10", "line_flatness", "<=", 1.25, "x"),
    ("Insert + duplicate check at 1M stored vs empty", "growth_ratio", "<=", 1.5, "x"),
    ("RSS after 100k deliveries vs after 1k", "memory_ratio", "<=", 1.10, "x"),
]  # fmt: skip


def targets(found: dict[str, float]) -> list[str]:
    lines = [
        "## Targets (this run)",
        "",
        "| Target | Bound | Measured | Met |",
        "|---|---|---|---|",
    ]
    for label, key, comparison, bound, unit in TARGETS:
        if key not in found:
            continue
        value = found[key]
        met = value >= bound if comparison == ">=" else value <= bound
        lines.append(
            f"| {label} | {comparison} {bound}{unit} | {value:.2f}{unit} | "
            f"{'yes' if met else '**no**'} |"
        )
    return [*lines, ""]


class Run:
    """One run of the benchmarks: its sizes, its servers, what it found."""

    def __init__(self, quick: bool, server: bool, database_url: str | None, scratch: str):
        self.quick, self.server, self.scratch = quick, server, scratch
        self.database_url = database_url
        self.stores = ["sqlite", *(["postgresql"] if database_url else [])]
        self.celery = server and shutil.which("redis-server") is not None
        self.found: dict[str, float] = {}
        self.lines = ["# Benchmark results", "", *machine(), ""]

    def folder(self, name: str) -> str:
        path = os.path.join(self.scratch, name)
        os.makedirs(path, exist_ok=True)
        return path

    def env(self, broker: str | None = None) -> dict[str, str]:
        env = {"BENCH_DATABASE_URL": self.database_url or ""}
        return {**env, "BENCH_BROKER_URL": broker} if broker else env

    def all(self) -> None:
        self.in_process()
        self.floor()
        self.wal()
        if self.server:
            self.servers()
            self.merchants()
        if self.celery:
            self.drain()
        self.flood()
        self.growth()
        self.log_page()
        if self.server:
            self.memory()

    def in_process(self) -> None:
        self.lines += [
            "## 1. Per request, in process (Flask test client)",
            "",
            "| Variant | Median µs | p99 µs | Bare / variant (median) |",
            "|---|---|---|---|",
        ]
        requests = 300 if self.quick else 5000
        results = {v: measure.per_request(v, requests, self.folder(v)) for v in IN_PROCESS}
        for variant, result in results.items():
            self.lines.append(
                f"| {variant} | {result['median_us']:.0f} | {result['p99_us']:.0f} | "
                f"{ratio(results['bare']['median_us'], result['median_us'])} |"
            )
        self.lines.append("")

    def floor(self) -> None:
        sync = measure.fdatasync_us(self.scratch)
        self.found["fdatasync_us"] = sync
        self.lines += [
            "## 2. The durable floor's parts (SQLite, one thread)",
            "",
            f"One small write plus `fdatasync` on this machine: **{sync:.0f} µs** (median).",
            "",
            "| Variant | Write lock held per delivery, µs (median) | Holds per delivery "
            "| Ratio to the floor |",
            "|---|---|---|---|",
        ]
        deliveries = 200 if self.quick else 2000
        holds = {
            v: measure.lock_hold(v, deliveries, self.folder(f"lock-{v}"))
            for v in ("floor_sqlite", "posweb_sqlite_worker", "posweb_sqlite_inline")
        }
        for variant, result in holds.items():
            self.found[f"hold_us:{variant}"] = result["hold_us"]
            self.lines.append(
                f"| {variant} | {result['hold_us']:.0f} | {result['holds']:.2f} | "
                f"{ratio(result['hold_us'], holds['floor_sqlite']['hold_us'])} |"
            )
        self.lines += [
            "",
            "The floor holds its lock for one insert and its commit (the sync); the inbox "
            "for its insert, the duplicate claim and the commit. In `inline` mode the "
            "receivers' outcome goes with the next delivery's commit (see "
            "`inbox/writer.py`): no hold of its own while requests keep coming.",
            "",
        ]

    def servers(self) -> None:
        seconds = 3 if self.quick else 10
        for title, (options, pattern) in SERVERS.items():
            self.lines += [
                f"## 3. Under a real server: {title}, wrk on loopback, {seconds} s each",
                "",
                "| Variant | Requests/s | Ratio to bare | Ratio to its store's floor | p99 ms |",
                "|---|---|---|---|---|",
            ]
            variants = list(dict.fromkeys(
                name.format(store=store) for name in pattern for store in self.stores
            ))  # fmt: skip
            if not self.celery:
                variants = [v for v in variants if not v.endswith("_celery")]
            rows = {}
            broker_server = measure.redis_server(self.scratch) if self.celery else None
            with broker_server or contextlib.nullcontext() as broker:
                for variant in variants:
                    if "postgresql" in variant:
                        measure.reset_postgresql(t.cast(str, self.database_url))
                    folder = self.folder(f"s{options[-1]}-{variant}")
                    with measure.gunicorn(variant, options, folder, self.env(broker)) as (port, _):
                        rows[variant] = measure.wrk(port, seconds, 32)
                    progress(f"{variant} ({' '.join(options)}): {rows[variant]['rps']:.0f}/s")
            key = options[-1]
            for variant, result in rows.items():
                store = next((s for s in self.stores if f"_{s}" in variant), None)
                floor = rows.get(f"floor_{store}") if store else None
                self.lines.append(
                    f"| {variant} | {result['rps']:.0f} | "
                    f"{ratio(result['rps'], rows['bare']['rps'])} | "
                    f"{ratio(result['rps'], floor['rps']) if floor else ''} | "
                    f"{result['p99_ms']:.2f} |"
                )
                if floor and variant.startswith("posweb_"):
                    self.found[f"{key}:{variant}/floor"] = result["rps"] / floor["rps"]
            if "posweb" in rows and "handwritten" in rows:
                self.found[f"{key}:posweb/handwritten"] = (
                    rows["posweb"]["rps"] / rows["handwritten"]["rps"]
                )
            self.lines += [
                "",
                "`worker`: the web tier stores and answers, receivers run in "
                "`flask posweb worker` (not running here); `inline`: the receiver runs in "
                "the request and its outcome is recorded; `celery`: stored, then a task is "
                "sent to Redis (no Celery worker running here).",
                "",
            ]

    def drain(self) -> None:
        count = 300 if self.quick else 5000
        self.lines += [
            "## 4. End to end: deliveries dispatched by two worker processes",
            "",
            f"{count:,} deliveries stored first (their tasks sent), then two worker "
            "processes started; the rate is taken between 10% and 90% processed.",
            "",
            "| Inbox | `flask posweb worker` ×2, deliveries/s | Celery workers ×2 (prefork, "
            "-c 1), deliveries/s | Ratio |",
            "|---|---|---|---|",
        ]
        with measure.redis_server(self.scratch) as broker:
            for store in self.stores:
                rates = {}
                for mode in ("worker", "celery"):
                    variant = f"posweb_{store}_{mode}"
                    if store == "postgresql":
                        measure.reset_postgresql(t.cast(str, self.database_url))
                    folder = self.folder(f"drain-{variant}")
                    rates[mode] = measure.drain_rate(variant, count, folder, self.env(broker))
                worker, celery = rates["worker"]["per_second"], rates["celery"]["per_second"]
                self.found[f"drain:{store}:celery"] = celery
                self.found[f"drain:{store}:ratio"] = celery / worker
                self.lines.append(
                    f"| {store} | {worker:.0f} | {celery:.0f} | {ratio(celery, worker)} |"
                )
        self.lines.append("")

    def wal(self) -> None:
        deliveries = 40 if self.quick else 400
        self.lines += [
            "## 2b. What one delivery writes (SQLite)",
            "",
            f"WAL pages per delivery, {deliveries} deliveries one at a time after 300: in "
            "total, and the b-trees (table or index) they belong to.",
            "",
            "| B-tree | `worker` | `inline` |",
            "|---|---|---|",
        ]
        found = {
            mode: measure.wal_frames(
                f"posweb_sqlite_{mode}", deliveries, self.folder(f"wal-{mode}")
            )
            for mode in ("worker", "inline")
        }
        names = sorted(set(found["worker"]) | set(found["inline"]), key=lambda n: n != "total")
        for name in names:
            cells = [f"{found[mode].get(name, 0):.2f}" for mode in ("worker", "inline")]
            self.lines.append(
                f"| {'**total**' if name == 'total' else name} | {' | '.join(cells)} |"
            )
            if name == "total":
                self.found["wal:worker"], self.found["wal:inline"] = map(float, cells)
        self.lines.append("")

    def merchants(self) -> None:
        seconds = 3 if self.quick else 10
        self.lines += [
            f"## 3b. Many merchants: {apps.MERCHANTS:,} merchants vs one (`gunicorn -w 2`, "
            f"`worker` mode, wrk {seconds} s)",
            "",
            "The same mix in both (half payments, 30% invoices, 20% product updates, each "
            f"a new delivery); with many merchants, {measure.HEAVY} of them send 20 times as "
            "much as each of the others, and each request carries its merchant's key, "
            "looked up in an SQLAlchemy table of key digests and cached.",
            "",
            "| Store | One merchant, requests/s | Many, requests/s | Ratio | p99 ms, one / many |",
            "|---|---|---|---|---|",
        ]
        one = measure.mix_script(os.path.join(self.scratch, "one.lua"), [apps.API_KEY])
        many = measure.mix_script(
            os.path.join(self.scratch, "many.lua"),
            [apps.merchant_key(n) for n in range(apps.MERCHANTS)],
        )
        for store in self.stores:
            rows = {}
            for variant, script in (
                (f"posweb_{store}_worker", one),
                (f"posweb_{store}_worker_merchants", many),
            ):
                if store == "postgresql":
                    measure.reset_postgresql(t.cast(str, self.database_url))
                folder = self.folder(f"merchants-{variant}")
                with measure.gunicorn(variant, ["-w", "2"], folder, self.env()) as (port, _):
                    measure.wrk(port, 2, 32, script)  # every merchant's key looked up once
                    rows[variant] = measure.wrk(port, seconds, 32, script)
                progress(f"{variant}: {rows[variant]['rps']:.0f}/s")
            single, multi = rows[f"posweb_{store}_worker"], rows[f"posweb_{store}_worker_merchants"]
            self.found[f"merchants:{store}"] = multi["rps"] / single["rps"]
            self.lines.append(
                f"| {store} | {single['rps']:.0f} | {multi['rps']:.0f} | "
                f"{ratio(multi['rps'], single['rps'])} | "
                f"{single['p99_ms']:.2f} / {multi['p99_ms']:.2f} |"
            )
        self.lines.append("")

    def flood(self) -> None:
        quiet, flood = (100, 2000) if self.quick else (300, 20_000)
        self.lines += [
            "## 4b. One merchant floods: the others' dispatch wait",
            "",
            "Two `flask posweb worker` processes (polling every 50 ms when idle); "
            f"{quiet} payments from 100 quiet merchants at 25 per second, with no other "
            f"traffic, then while one merchant has {flood:,} "
            "deliveries waiting and sends more all along. The wait is from a payment's "
            "arrival to its receiver's start.",
            "",
            "| Store | Calm p50 / p99 ms | Flood p50 / p99 ms | p99 ratio | Flood left waiting |",
            "|---|---|---|---|---|",
        ]
        for store in self.stores:
            runs = {}
            for name, size in (("calm", 0), ("flood", flood)):
                if store == "postgresql":
                    measure.reset_postgresql(t.cast(str, self.database_url))
                folder = self.folder(f"flood-{store}-{name}")
                runs[name] = measure.quiet_latency(store, size, quiet, folder, self.env())
                progress(f"quiet merchants, {store}, {name}: p99 {runs[name]['p99_ms']:.0f} ms")
            calm, busy = runs["calm"], runs["flood"]
            self.found[f"flood:{store}"] = busy["p99_ms"] / calm["p99_ms"]
            self.lines.append(
                f"| {store} | {calm['p50_ms']:.0f} / {calm['p99_ms']:.0f} | "
                f"{busy['p50_ms']:.0f} / {busy['p99_ms']:.0f} | "
                f"{ratio(busy['p99_ms'], calm['p99_ms'])} | {busy['flood_waiting']:,.0f} |"
            )
        self.lines.append("")

    def growth(self) -> None:
        self.lines += [
            "## 5. How cost grows",
            "",
            "### Invoice line items (parse + validate)",
            "",
            "| Lines | ms | µs per line | µs per line beyond the first |",
            "|---|---|---|---|",
        ]
        repeats = 5 if self.quick else 30
        one = measure.validation(1, repeats)["ms"]
        for count in (1, 10, 100, 1000, 5000):
            result = measure.validation(count, repeats)
            added = (result["ms"] - one) * 1000 / (count - 1) if count > 1 else float("nan")
            self.lines.append(
                f"| {count} | {result['ms']:.3f} | {result['us_per_line']:.2f} | {added:.2f} |"
            )
            self.found[f"added_line_us:{count}"] = added
            if count == 1000:
                self.found["validation_1000_ms"] = result["ms"]
        self.found["line_flatness"] = (
            self.found["added_line_us:5000"] / self.found["added_line_us:10"]
        )
        sizes = [0, 1000, 10_000] if self.quick else [0, 100_000, 1_000_000]
        self.lines += [
            "",
            "### Inbox size: insert + duplicate check per delivery (SQLite, full sync)",
            "",
            "| Deliveries stored | New µs | Ratio | Duplicate µs | New, no disk sync µs | Ratio |",
            "|---|---|---|---|---|---|",
        ]
        growth = {
            n: measure.inbox_growth(n, 50 if self.quick else 300, self.scratch) for n in sizes
        }
        empty = growth[0]
        for stored, result in growth.items():
            new, unsynced = result["new_us"], result["new_without_sync_us"]
            self.lines.append(
                f"| {stored:,} | {new:.0f} | {ratio(new, empty['new_us'])} | "
                f"{result['duplicate_us']:.0f} | {unsynced:.1f} | "
                f"{ratio(unsynced, empty['new_without_sync_us'])} |"
            )
        self.found["growth_ratio"] = growth[sizes[-1]]["new_us"] / empty["new_us"]
        self.lines += [
            "",
            "### Receivers on one event (median µs per request, in process)",
            "",
            "| Receivers | No inbox | Ratio | SQLite inbox | Ratio |",
            "|---|---|---|---|---|",
        ]
        counts = {
            n: (
                measure.receivers(n, False, 200 if self.quick else 2000, self.scratch),
                measure.receivers(n, True, 100 if self.quick else 1000, self.scratch),
            )
            for n in (1, 10, 50)
        }
        for count, (bare, stored) in counts.items():
            self.lines.append(
                f"| {count} | {bare:.0f} | {ratio(bare, counts[1][0])} | "
                f"{stored:.0f} | {ratio(stored, counts[1][1])} |"
            )
        self.lines.append("")

    def log_page(self) -> None:
        small, large = (50, 2000) if self.quick else (1_000, 1_000_000)
        results = log_page.measure(
            small, large, repeats=1 if self.quick else 5, directory=self.scratch
        )
        for name, timings in results.items():
            self.found[f"log_page:{name}"] = timings["ratio"]
        self.lines += [
            f"## 6. The delivery log page: {large:,} stored deliveries vs {small:,} (SQLite)",
            "",
            "Each page through the Flask test client (queries and template), median of "
            "the repeats.",
            "",
            log_page.report(results, small, large),
            "",
        ]

    def memory(self) -> None:
        checkpoints = [100, 1000] if self.quick else [1000, 100_000]
        rss = measure.memory(checkpoints, self.folder("memory"))
        low, high = rss[checkpoints[0]], rss[checkpoints[-1]]
        self.found["memory_ratio"] = high / low
        self.lines += [
            "## 7. Memory: one gunicorn worker, SQLite inbox, inline dispatch",
            "",
            "| Deliveries | RSS KiB |",
            "|---|---|",
            *(f"| {n:,} | {kib:,} |" for n, kib in rss.items()),
            "",
            f"After {checkpoints[-1]:,}: {ratio(high, low)} of the RSS after {checkpoints[0]:,}.",
            "",
        ]


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=t.cast(str, __doc__).split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    parser.add_argument("--no-server", action="store_true", help="skip gunicorn, wrk, Celery")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("POSWEB_TEST_DATABASE_URL"),
        help="a PostgreSQL server for the PostgreSQL variants (its posweb tables are dropped)",
    )
    parser.add_argument(
        "--profile", action="store_true", help=f"profile the storing variants into {PROFILES.name}/"
    )
    args = parser.parse_args(argv)
    if args.profile:
        PROFILES.mkdir(exist_ok=True)
        with measure.scratch() as scratch:
            for variant in ("posweb", "posweb_sqlite_worker", "posweb_sqlite_inline"):
                folder = os.path.join(scratch, variant)
                report = measure.profile(variant, 300 if args.quick else 3000, folder)
                (PROFILES / f"{variant}.txt").write_text(report)
                print(report)
        return 0
    server = not args.no_server and shutil.which("wrk") is not None
    with measure.scratch() as scratch:
        run = Run(args.quick, server, args.database_url if server else None, scratch)
        run.all()
    lines, found = run.lines, run.found
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## "))
    lines[first_section:first_section] = targets(found)
    report = "\n".join(lines) + "\n"
    if PROFILE.exists():
        report += "\n" + PROFILE.read_text()
    print(report)
    print("Key figures:", {k: round(v, 3) for k, v in found.items()})
    if args.write:
        RESULTS.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
