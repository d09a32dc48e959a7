"""The delivery log page at 1M stored deliveries against the same pages at 1k (SQLite).

Each page is fetched through the Flask test client, as a browser would get it
(queries and template), from an inbox filled straight through ``sqlite3``:
30 days of deliveries, mostly processed, a few failed, dead and rejected, of
several events, with bodies of a realistic size. ::

    python -m benchmarks.log_page                  # 1k against 1M: minutes, ~0.5 GB of disk
    python -m benchmarks.log_page --large 20000    # a quick check

.. versionadded:: 0.2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import statistics
import tempfile
import time
import typing as t
import urllib.parse

from flask import Flask

from flask_posweb import PosWeb
from flask_posweb.inbox import Inbox
from flask_posweb.sending import sample

__all__ = ["PAGES", "fill", "measure", "page_times"]

#: Events by share of the traffic (a shop: payments and invoices most of all).
EVENTS = {
    "payment_created": 40,
    "invoice_created": 30,
    "product_updated": 10,
    "customer_created": 8,
    "shift_closed": 4,
    "adjustment_created": 4,
    "transfer_order_created": 3,
    "supplier_created": 1,
}
DAYS = 30
KEY = "benchmark-key-0123456789"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "shop/ledger.py", line 42, in post_to_ledger\n'
    "    ledger.post(entry)\n"
    "ConnectionError: the ledger did not answer\n"
)


def status_of(n: int) -> str:
    """About 1% failed, 0.1% dead, 0.2% rejected, the rest processed."""
    if n % 1000 == 7:
        return "dead"
    if n % 500 == 3:
        return "rejected"
    if n % 100 == 1:
        return "failed"
    return "processed"


def event_of(n: int) -> str:
    wheel = [name for name, share in EVENTS.items() for _ in range(share)]
    return wheel[(n * 37) % len(wheel)]


def fill(path: str, rows: int, *, now: dt.datetime, analyze: bool = True) -> None:
    """Put ``rows`` deliveries received over the last :data:`DAYS` days in the
    inbox at ``path``, fast (no sync, big transactions: setup only).

    :param analyze: give the planner its statistics, as the dispatcher's
        housekeeping does within its first pass (the pages here run without one).
    """
    inbox = Inbox.from_url(f"sqlite:///{path}")
    inbox.counts()  # creates the tables at the latest revision
    inbox.close()
    bodies = {name: json.loads(sample(name)) for name in EVENTS}
    step = dt.timedelta(days=DAYS) / max(rows, 1)
    start = now - dt.timedelta(days=DAYS)
    failure = json.dumps(
        [
            {
                "receiver": "ledger",
                "attempt": 1,
                "generation": 0,
                "ok": False,
                "error": TRACEBACK,
                "started_at": start.isoformat(),
                "duration_ms": 2.5,
            }
        ]
    )
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    sql = (
        "INSERT INTO posweb_deliveries (inbox, event, status, raw, headers, errors, outcomes, "
        "attempts, generation, replay, received_at, updated_at, next_attempt_at) "
        "VALUES ('default', ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)"
    )
    headers = json.dumps({"Content-Type": "application/json", "User-Agent": "DealPOS"})

    def row(n: int) -> tuple[t.Any, ...]:
        event, status = event_of(n), status_of(n)
        body = {**bodies[event], "ID": f"fill-{n}", "Number": f"N-{n:08d}"}
        at = (start + step * n).isoformat(" ")
        failed = status in ("failed", "dead")
        return (
            event,
            status,
            json.dumps(body).encode(),
            headers,
            '{"Amount": ["Not a valid number."]}' if status == "rejected" else None,
            failure if failed else "[]",
            1 if failed or status == "processed" else 0,
            at,
            at,
            at if status == "failed" else None,
        )

    for first in range(0, rows, 50_000):
        db.executemany(sql, [row(n) for n in range(first, min(rows, first + 50_000))])
        db.commit()
    if analyze:
        db.execute("ANALYZE")
        db.commit()
    db.close()


def app_for(path: str) -> Flask:
    """An app with the log page on, reading the inbox at ``path``."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="benchmark-secret-key-0123456789",
        POSWEB_API_KEYS=[KEY],
        POSWEB_DATABASE_URL=f"sqlite:///{path}",
        POSWEB_DASHBOARD=True,
        POSWEB_DASHBOARD_ACCESS=lambda: True,
        # Nothing dispatched here: the filled failed deliveries stay as they are.
        POSWEB_DISPATCH="worker",
    )
    app.register_blueprint(PosWeb().blueprint, url_prefix="/dealpos")
    return app


def pages(now: dt.datetime) -> dict[str, str]:
    """The pages measured, as query strings of the list."""
    day_ago = (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    return {
        "first page": "",
        "failed payments": "status=failed&event=payment_created",
        "one event": "event=supplier_created",
        "second page": "before={before}",
        # A body of an hour ago: found after a scan of the last day's newest bodies.
        "text, last 24 hours": "text=N-{recent:08d}&since=" + urllib.parse.quote(day_ago),
    }


#: The names of :func:`pages`, in order.
PAGES = list(pages(dt.datetime(2026, 1, 1)))


def page_times(path: str, rows: int, now: dt.datetime, repeats: int) -> dict[str, float]:
    """Median milliseconds per page (one warm-up fetch first)."""
    app = app_for(path)
    client = app.test_client()
    times = {}
    for name, query in pages(now).items():
        recent = max(rows - rows // (DAYS * 24), 0)
        url = "/dealpos/log/?" + query.format(before=max(rows - 50, 1), recent=recent)
        first = client.get(url)
        assert first.status_code == 200, (url, first.get_data(as_text=True)[:2000])
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.get(url)
            samples.append(time.perf_counter() - started)
        times[name] = statistics.median(samples) * 1000
    app.extensions["posweb"].close()
    return times


def measure(
    small: int = 1_000,
    large: int = 1_000_000,
    *,
    repeats: int = 5,
    directory: str | None = None,
) -> dict[str, dict[str, float]]:
    """Each page's median milliseconds at ``small`` and ``large`` stored
    deliveries, and their ratio.

    :returns: ``{page: {"small_ms": ..., "large_ms": ..., "ratio": ...}}``.
    """
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with tempfile.TemporaryDirectory(prefix="posweb-logpage-", dir=directory) as folder:
        timings = {}
        for size in (small, large):
            path = os.path.join(folder, f"inbox-{size}.sqlite3")
            fill(path, size, now=now)
            timings[size] = page_times(path, size, now, repeats)
            os.remove(path)
    return {
        name: {
            "small_ms": timings[small][name],
            "large_ms": timings[large][name],
            "ratio": timings[large][name] / timings[small][name],
        }
        for name in PAGES
    }


def report(results: dict[str, dict[str, float]], small: int, large: int) -> str:
    lines = [
        f"| Page | {small:,} stored | {large:,} stored | Ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['small_ms']:.1f} ms | {r['large_ms']:.1f} ms | {r['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", help="Where the inboxes are filled (default: the temp folder).")
    args = parser.parse_args(argv)
    results = measure(args.small, args.large, repeats=args.repeats, directory=args.dir)
    print(report(results, args.small, args.large))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
