"""The benchmark runs (on tiny sizes, without a server): a smoke test, not a measurement."""

from __future__ import annotations

import pathlib

import pytest

from benchmarks import measure
from benchmarks.__main__ import main


def test_the_benchmark_runs_and_reports_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--no-server"]) == 0
    report = capsys.readouterr().out
    for heading in ("## 1. Per request, in process", "## 2. The durable floor's parts",
                    "### Invoice line items", "### Inbox size", "### Receivers on one event",
                    "## 6. The delivery log page", "## 2b. What one delivery writes",
                    "## 4b. One merchant floods"):  # fmt: skip
        assert heading in report
    bare = next(line for line in report.splitlines() if line.startswith("| bare |"))
    assert bare.endswith("| 1.00x |")
    floor = [line for line in report.splitlines() if line.startswith("| floor_sqlite |")]
    assert floor[-1].endswith("| 1.00 | 1.00x |")  # one lock hold per delivery, the baseline
    inline = [line for line in report.splitlines() if line.startswith("| posweb_sqlite_inline |")]
    # Section 2: one hold per delivery, the outcome of the one before going with
    # it (and the odd settling by the background thread).
    assert 1 <= float(inline[1].split("|")[3]) < 1.5
    assert "fdatasync" in report and "Key figures" in report


def test_the_log_page_benchmark_runs_and_reports_ratios() -> None:
    from benchmarks.log_page import PAGES
    from benchmarks.log_page import measure as measure_pages

    results = measure_pages(small=50, large=400, repeats=1)
    assert list(results) == PAGES
    for timings in results.values():
        assert timings["small_ms"] > 0 and timings["large_ms"] > 0
        assert timings["ratio"] == timings["large_ms"] / timings["small_ms"]


def test_the_drain_measurement_counts_what_the_workers_processed(tmp_path: pathlib.Path) -> None:
    rate = measure.drain_rate("posweb_sqlite_worker", 60, str(tmp_path), {}, workers=2)
    assert rate["per_second"] > 0
