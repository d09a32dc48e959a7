"""Run the benchmarks and print (or write) ``benchmarks/RESULTS.md``.

    python -m benchmarks            # everything: about 5 minutes on 2 cores
    python -m benchmarks --quick    # small sizes, short runs: a smoke test
    python -m benchmarks --write    # also write benchmarks/RESULTS.md
    python -m benchmarks --profile  # pyinstrument profiles of the PosWeb variants

Every figure is measured in the same run as its baseline and reported as a
ratio too. The server part needs ``wrk`` (Debian package) and gunicorn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import pathlib
import platform
import shutil
import sqlite3
import subprocess
import typing as t

from . import measure

RESULTS = pathlib.Path(__file__).parent / "RESULTS.md"
PROFILE = pathlib.Path(__file__).parent / "PROFILE.md"
PROFILES = pathlib.Path(__file__).parent / "profiles"
VARIANTS = ["bare", "handwritten", "posweb", "posweb_sqlite"]
SERVERS = {
    "sync workers (`gunicorn -w 2`)": ["-w", "2"],
    "threaded workers (`gunicorn -w 2 --threads 8`)": ["-w", "2", "--threads", "8"],
}


def machine() -> list[str]:
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor(),
    )
    packages = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("flask", "werkzeug", "marshmallow", "blinker", "sqlalchemy", "gunicorn")
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


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


#: The issue's targets: (label, key in the figures, comparison, bound, unit).
TARGETS = [
    ("PosWeb without inbox, requests/s vs bare (gunicorn -w 2)", "2:posweb", ">=", 0.90, "x"),
    (
        "PosWeb with the SQLite inbox, requests/s vs bare (gunicorn -w 2)",
        "2:posweb_sqlite",
        ">=",
        0.70,
        "x",
    ),
    ("Validation of a 1,000-line invoice", "validation_1000_ms", "<=", 20, " ms"),
    ("Time per added line, 5,000 lines vs 10", "line_flatness", "<=", 1.25, "x"),
    ("Insert + duplicate check at 1M stored vs empty", "growth_ratio", "<=", 1.5, "x"),
    ("RSS after 100k deliveries vs after 1k", "memory_ratio", "<=", 1.10, "x"),
]


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


def run(quick: bool, server: bool) -> tuple[list[str], dict[str, float]]:
    lines = ["# Benchmark results", "", *machine(), ""]
    found: dict[str, float] = {}
    with measure.scratch() as scratch:
        lines += [
            "## 1. Per request, in process (Flask test client)",
            "",
            "| Variant | Median µs | p99 µs | Bare / variant (median) |",
            "|---|---|---|---|",
        ]
        requests = 300 if quick else 5000
        inproc = {v: measure.per_request(v, requests, os.path.join(scratch, v)) for v in VARIANTS}
        for variant, result in inproc.items():
            lines.append(
                f"| {variant} | {result['median_us']:.0f} | {result['p99_us']:.0f} | "
                f"{ratio(inproc['bare']['median_us'], result['median_us'])} |"
            )
        lines.append("")
        if server:
            seconds = 3 if quick else 10
            for title, options in SERVERS.items():
                lines += [
                    f"## 2. Under a real server: {title}, wrk on loopback, {seconds} s each",
                    "",
                    "| Variant | Requests/s | Ratio to bare | p99 ms |",
                    "|---|---|---|---|",
                ]
                rows = {}
                for variant in [*VARIANTS, "posweb_sqlite_worker"]:
                    with measure.gunicorn(
                        variant, options, os.path.join(scratch, f"s-{variant}")
                    ) as (port, _):
                        rows[variant] = measure.wrk(port, seconds, 32)
                for variant, result in rows.items():
                    lines.append(
                        f"| {variant} | {result['rps']:.0f} | "
                        f"{ratio(result['rps'], rows['bare']['rps'])} | {result['p99_ms']:.2f} |"
                    )
                    found[f"{options[-1]}:{variant}"] = result["rps"] / rows["bare"]["rps"]
                lines += [
                    "",
                    '`posweb_sqlite_worker`: the same inbox with `POSWEB_DISPATCH = "worker"`: '
                    "the web tier stores and answers; receivers run in `flask posweb worker` "
                    "(not running during the measurement).",
                    "",
                ]
        lines += [
            "## 3. How cost grows",
            "",
            "### Invoice line items (parse + validate)",
            "",
            "| Lines | ms | µs per line | µs per line beyond the first |",
            "|---|---|---|---|",
        ]
        one = measure.validation(1, 5 if quick else 30)["ms"]
        for count in (1, 10, 100, 1000, 5000):
            result = measure.validation(count, 5 if quick else 30)
            added = (result["ms"] - one) * 1000 / (count - 1) if count > 1 else float("nan")
            lines.append(
                f"| {count} | {result['ms']:.3f} | {result['us_per_line']:.2f} | {added:.2f} |"
            )
            found[f"added_line_us:{count}"] = added
            if count == 1000:
                found["validation_1000_ms"] = result["ms"]
        found["line_flatness"] = found["added_line_us:5000"] / found["added_line_us:10"]
        sizes = [0, 1000, 10_000] if quick else [0, 100_000, 1_000_000]
        lines += [
            "",
            "### Inbox size: insert + duplicate check per delivery (SQLite, full sync)",
            "",
            "| Deliveries stored | New µs | Ratio | Duplicate µs | New, no disk sync µs | Ratio |",
            "|---|---|---|---|---|---|",
        ]
        growth = {n: measure.inbox_growth(n, 50 if quick else 300, scratch) for n in sizes}
        empty = growth[0]
        for stored, result in growth.items():
            new, unsynced = result["new_us"], result["new_without_sync_us"]
            lines.append(
                f"| {stored:,} | {new:.0f} | {ratio(new, empty['new_us'])} | "
                f"{result['duplicate_us']:.0f} | {unsynced:.1f} | "
                f"{ratio(unsynced, empty['new_without_sync_us'])} |"
            )
        found["growth_ratio"] = growth[sizes[-1]]["new_us"] / empty["new_us"]
        lines += [
            "",
            "### Receivers on one event (median µs per request, in process)",
            "",
            "| Receivers | No inbox | Ratio | SQLite inbox | Ratio |",
            "|---|---|---|---|---|",
        ]
        counts = {
            n: (
                measure.receivers(n, False, 200 if quick else 2000, scratch),
                measure.receivers(n, True, 100 if quick else 1000, scratch),
            )
            for n in (1, 10, 50)
        }
        for count, (bare, stored) in counts.items():
            lines.append(
                f"| {count} | {bare:.0f} | {ratio(bare, counts[1][0])} | "
                f"{stored:.0f} | {ratio(stored, counts[1][1])} |"
            )
        if server:
            checkpoints = [100, 1000] if quick else [1000, 100_000]
            rss = measure.memory(checkpoints, os.path.join(scratch, "memory"))
            low, high = rss[checkpoints[0]], rss[checkpoints[-1]]
            lines += [
                "",
                "## 4. Memory: one gunicorn worker, SQLite inbox, inline dispatch",
                "",
                "| Deliveries | RSS KiB |",
                "|---|---|",
                *(f"| {n:,} | {kib:,} |" for n, kib in rss.items()),
                "",
                f"After {checkpoints[-1]:,}: {ratio(high, low)} "
                f"of the RSS after {checkpoints[0]:,}.",
                "",
            ]
            found["memory_ratio"] = high / low
    return lines, found


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    parser.add_argument("--no-server", action="store_true", help="skip gunicorn + wrk and memory")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    parser.add_argument(
        "--profile", action="store_true", help=f"profile the PosWeb variants into {PROFILES.name}/"
    )
    args = parser.parse_args(argv)
    if args.profile:
        PROFILES.mkdir(exist_ok=True)
        with measure.scratch() as scratch:
            for variant in ("posweb", "posweb_sqlite"):
                report = measure.profile(variant, 300 if args.quick else 3000, scratch)
                (PROFILES / f"{variant}.txt").write_text(report)
                print(report)
        return 0
    server = not args.no_server and shutil.which("wrk") is not None
    lines, found = run(args.quick, server)
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
