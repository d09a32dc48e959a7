"""The benchmark runs (on tiny sizes, without a server): a smoke test, not a measurement."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import main


def test_the_benchmark_runs_and_reports_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--no-server"]) == 0
    report = capsys.readouterr().out
    for heading in ("## 1. Per request, in process", "### Invoice line items",
                    "### Inbox size", "### Receivers on one event"):  # fmt: skip
        assert heading in report
    bare = next(line for line in report.splitlines() if line.startswith("| bare |"))
    assert bare.endswith("| 1.00x |")
    assert "| posweb_sqlite |" in report and "Key figures" in report


def test_the_log_page_benchmark_runs_and_reports_ratios() -> None:
    from benchmarks.log_page import PAGES
    from benchmarks.log_page import measure

    results = measure(small=50, large=400, repeats=1)
    assert list(results) == PAGES
    for timings in results.values():
        assert timings["small_ms"] > 0 and timings["large_ms"] > 0
        assert timings["ratio"] == timings["large_ms"] / timings["small_ms"]
