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
