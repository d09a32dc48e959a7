"""Telemetry: the outcome record, spans through the OpenTelemetry SDK, metrics
read back from OpenTelemetry and Prometheus, and a real gunicorn's counters."""

from __future__ import annotations

import collections
import http.client
import json
import logging
import pathlib
import subprocess
import sys
import typing as t
from collections.abc import Iterator

import pytest
from flask import Flask
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from flask_posweb import PosWeb
from flask_posweb import WebhookEvent
from flask_posweb.dispatch.outcomes import FIELDS
from flask_posweb.exceptions import ConfigurationError
from flask_posweb.inbox import Backlog
from flask_posweb.metrics import MerchantLabels
from flask_posweb.metrics import recorder
from flask_posweb.metrics.instruments import backlog_readings
from flask_posweb.sending import sample
from flask_posweb.testing import PosWebClient
from flask_posweb.web import guard

from . import servers
from .conftest import KEY
from .conftest import MakeApp


class _Switched(SimpleSpanProcessor):
    """Exports only while a test listens: the provider stays for the session."""

    listening = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.listening:
            super().on_end(span)


_EXPORTER = InMemorySpanExporter()
_PROCESSOR = _Switched(_EXPORTER)
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def _providers() -> None:
    """The SDK's providers, set once per process (OpenTelemetry refuses a second)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_PROCESSOR)
        trace.set_tracer_provider(provider)
    if not isinstance(otel_metrics.get_meter_provider(), MeterProvider):
        otel_metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    _PROCESSOR.listening = True
    yield _EXPORTER
    _PROCESSOR.listening = False
    _EXPORTER.clear()


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = collections.defaultdict(list)
    for span in exporter.get_finished_spans():
        found[span.name].append(span)
    return found


def ledger(sender: Flask, event: WebhookEvent[t.Any], **extra: t.Any) -> None:
    pass


# -- the outcome record --------------------------------------------------------------


def test_one_record_per_outcome_with_its_fields_and_no_body_or_secret(
    make_app: MakeApp, posweb: PosWeb, caplog: pytest.LogCaptureFixture
) -> None:
    posweb.on("payment_created")(ledger)
    client = t.cast(PosWebClient, make_app().test_client())
    with caplog.at_level(logging.INFO, logger="flask_posweb.outcomes"):
        body = {**json.loads(sample("payment_created")), "Secret": "body-only-value"}
        response = client.deliver("payment_created", body)
    records = [r for r in caplog.records if r.name == "flask_posweb.outcomes"]
    assert len(records) == 1
    (record,) = records
    assert record.levelno == logging.INFO
    fields = {name: getattr(record, f"posweb_{name}") for name in FIELDS}
    assert fields["delivery_id"] == int(response.headers["X-PosWeb-Delivery"])
    assert fields["event"] == "payment_created"
    assert fields["merchant"] is None
    assert fields["status"] == "processed"
    assert fields["attempts"] == 1
    assert 0 <= fields["duration"] < 5
    shown = json.dumps({**record.__dict__, "msg": record.getMessage()}, default=str)
    assert "body-only-value" not in shown and KEY not in shown


def test_the_outcome_record_ships_as_json(
    make_app: MakeApp, posweb: PosWeb, caplog: pytest.LogCaptureFixture
) -> None:
    """python-json-logger puts the fields at the top level (docs/telemetry.rst)."""
    from pythonjsonlogger.json import JsonFormatter

    client = t.cast(PosWebClient, make_app().test_client())
    with caplog.at_level(logging.INFO, logger="flask_posweb.outcomes"):
        client.deliver("outlet_created")  # nobody subscribes: unhandled
    (record,) = [r for r in caplog.records if r.name == "flask_posweb.outcomes"]
    shipped = json.loads(JsonFormatter("%(levelname)s %(name)s %(message)s").format(record))
    assert shipped["posweb_status"] == "unhandled" and shipped["levelname"] == "WARNING"
    assert "no receiver subscribes to it" in shipped["message"]


# -- spans -------------------------------------------------------------------------------


def test_spans_of_a_stored_and_dispatched_delivery(
    make_app: MakeApp, posweb: PosWeb, spans: InMemorySpanExporter
) -> None:
    posweb.on("payment_created")(ledger)
    client = t.cast(PosWebClient, make_app().test_client())
    delivery_id = int(client.deliver("payment_created").headers["X-PosWeb-Delivery"])
    found = by_name(spans)
    (receive,) = found["receive payment_created"]
    (process,) = found["process payment_created"]
    for span in (receive, process):
        attributes = span.attributes or {}
        assert attributes["messaging.system"] == "dealpos"
        assert attributes["messaging.destination.name"] == "payment_created"
        assert attributes["messaging.message.id"] == str(delivery_id)
        assert attributes["posweb.delivery.id"] == delivery_id
        assert attributes["posweb.event"] == "payment_created"
    assert (receive.attributes or {})["messaging.operation.type"] == "receive"
    assert (process.attributes or {})["messaging.operation.type"] == "process"
    assert (process.attributes or {})["posweb.status"] == "processed"
    # No host instrumentation: the receive span is the server span, with HTTP's attributes.
    assert receive.kind is trace.SpanKind.SERVER
    assert (receive.attributes or {})["http.response.status_code"] == 200
    assert (receive.attributes or {})["http.route"] == "/dealpos/payment-created"
    assert process.kind is trace.SpanKind.CONSUMER
    context = receive.get_span_context()
    assert context is not None
    for name in ("posweb.verify", "posweb.validate", "posweb.store"):
        (child,) = found[name]
        assert child.parent is not None and child.parent.span_id == context.span_id
    assert (found["posweb.store"][0].attributes or {})["posweb.delivery.id"] == delivery_id


def test_spans_of_refused_deliveries(
    make_app: MakeApp, spans: InMemorySpanExporter
) -> None:
    client = t.cast(PosWebClient, make_app().test_client())
    invalid = client.deliver("payment_created", {"ID": "not a payment"})
    assert invalid.status_code in (400, 422)
    client.deliver("payment_created", key="wrong-key-0123456789")
    first, second = by_name(spans)["receive payment_created"]
    for span, code in ((first, invalid.status_code), (second, 401)):
        assert span.status.status_code is trace.StatusCode.ERROR
        assert (span.attributes or {})["http.response.status_code"] == code
        assert (span.attributes or {})["error.type"]
    assert (second.attributes or {})["error.type"] == "AuthenticationError"
    (store,) = by_name(spans)["posweb.store"]  # the refused body, kept; the 401 stores nothing
    assert isinstance((store.attributes or {})["posweb.delivery.id"], int)


def test_under_a_host_server_span_the_receive_span_is_its_child(
    make_app: MakeApp, spans: InMemorySpanExporter
) -> None:
    client = t.cast(PosWebClient, make_app().test_client())
    with trace.get_tracer("host").start_as_current_span("POST /dealpos/payment-created"):
        client.deliver("payment_created")
    (receive,) = by_name(spans)["receive payment_created"]
    assert receive.kind is trace.SpanKind.INTERNAL
    assert "http.response.status_code" not in (receive.attributes or {})


def test_without_opentelemetry_nothing_is_imported_and_spans_cost_nothing() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from flask_posweb import tracing\n"
        "assert tracing.trace is None and tracing.span('x') is tracing.NOOP\n"
        "import timeit\n"
        "n = 100_000\n"
        "span = lambda: tracing.span('x', {'posweb.event': 'e'}).__enter__()\n"
        "cost = timeit.timeit(span, number=n)\n"
        "print(cost / n)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(done.stdout) < 5e-6  # seconds per span: a call, no allocation of ours


# -- metrics -----------------------------------------------------------------------------


def otel_points(name: str) -> dict[tuple[tuple[str, t.Any], ...], float]:
    data = _READER.get_metrics_data()
    found: dict[tuple[tuple[str, t.Any], ...], float] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        value = getattr(point, "value", None)
                        found[key] = float(getattr(point, "count", 0) if value is None else value)
    return found


def test_opentelemetry_metrics(make_app: MakeApp, posweb: PosWeb) -> None:
    posweb.on("supplier_created")(ledger)
    app = make_app(POSWEB_METRICS=["opentelemetry"])
    client = t.cast(PosWebClient, app.test_client())
    key = (("http.response.status_code", 200), ("posweb.event", "supplier_created"))
    before = otel_points("posweb.deliveries.received").get(key, 0)
    client.deliver("supplier_created")
    client.deliver("supplier_created")  # the same body again: a duplicate
    client.deliver("supplier_created", key="wrong-key-0123456789")
    received = otel_points("posweb.deliveries.received")
    assert received[key] - before == 2
    refused = (("http.response.status_code", 401), ("posweb.event", "supplier_created"))
    assert otel_points("posweb.deliveries.rejected")[refused] >= 1
    assert otel_points("posweb.deliveries.duplicate")[(("posweb.event", "supplier_created"),)]
    outcome = (("posweb.event", "supplier_created"), ("posweb.status", "processed"))
    assert otel_points("posweb.dispatch.outcomes")[outcome] >= 1
    receiver = (("posweb.event", "supplier_created"), ("posweb.receiver", "ledger"))
    assert otel_points("posweb.receiver.duration")[receiver] >= 1
    inbox = get_inbox_name(app)
    assert otel_points("posweb.backlog.waiting")[(("posweb.inbox", inbox),)] == 0


def get_inbox_name(app: Flask) -> str:
    from flask_posweb.state import get_state

    return get_state(app).require_inbox().name


Samples = dict[tuple[str, frozenset[t.Any]], float]


def scrape(client: t.Any, path: str = "/dealpos/metrics") -> Samples:
    response = client.get(path)
    assert response.status_code == 200
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict[tuple[str, frozenset[t.Any]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, frozenset[t.Any]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def test_prometheus_metrics_and_exposition(make_app: MakeApp, posweb: PosWeb) -> None:
    posweb.on("customer_created")(ledger)
    app = make_app(POSWEB_METRICS=["prometheus"], POSWEB_METRICS_PATH="/metrics")
    client = t.cast(PosWebClient, app.test_client())
    before = scrape(client)
    client.deliver("customer_created")
    client.deliver("customer_created")
    client.deliver("customer_created", key="wrong-key-0123456789")
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    event = {"event": "customer_created"}
    assert delta("posweb_deliveries_received_total", **event) == 3
    assert delta("posweb_deliveries_received_total", status_code="200", **event) == 2
    assert delta("posweb_deliveries_stored_total", **event) == 1
    assert delta("posweb_deliveries_duplicate_total", **event) == 1
    assert delta("posweb_deliveries_rejected_total", status_code="401", **event) == 1
    assert delta("posweb_dispatch_outcomes_total", status="processed", **event) == 1
    assert delta("posweb_receiver_duration_seconds_count", receiver="ledger", **event) == 1
    inbox = {"inbox": get_inbox_name(app)}
    assert total(after, "posweb_backlog_waiting", **inbox) == 0
    assert total(after, "posweb_backlog_dead", **inbox) == 0
    assert ("posweb_backlog_oldest_due_age_seconds", frozenset(inbox.items())) in after


def test_metrics_need_their_packages_and_the_path_needs_prometheus(make_app: MakeApp) -> None:
    with pytest.raises(ConfigurationError, match="'opentelemetry' and 'prometheus'"):
        make_app(POSWEB_METRICS=["statsd"])
    with pytest.raises(ConfigurationError, match="add 'prometheus' to POSWEB_METRICS"):
        make_app(POSWEB_METRICS_PATH="/metrics")
    with pytest.raises(ConfigurationError, match="POSWEB_METRICS_MERCHANTS"):
        make_app(POSWEB_METRICS_MERCHANTS=-1)
    app = make_app()
    assert app.test_client().get("/dealpos/metrics").status_code == 404  # off by default


def test_merchant_labels_are_capped_and_never_taken_by_an_unproven_claim() -> None:
    labels = MerchantLabels(2)
    assert labels("guessed", proven=False) == "other"  # a refused request's URL takes no place
    assert [labels(m) for m in ("a", "b", "c", "a", None)] == ["a", "b", "other", "a", ""]
    assert labels("a", proven=False) == "a"
    assert MerchantLabels(0)("a") is None  # no merchant label at all
    assert recorder.SENDER == guard.SENDER


def test_backlog_gauges_come_from_every_field() -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    readings = backlog_readings(Backlog(3, 2, now - dt.timedelta(seconds=90), 1, 4), now)
    assert readings == {
        "waiting": 3,
        "due": 2,
        "oldest_due_age": 90.0,
        "dead": 1,
        "stranded": 4,
    }
    assert backlog_readings(Backlog(0, 0, None, 0, 0), now)["oldest_due_age"] == 0


# -- a real gunicorn, 2 workers, multiprocess mode ---------------------------------------


@pytest.mark.slow
def test_gunicorn_counters_add_up_to_the_deliveries_sent(
    tmp_path: pathlib.Path,
) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = servers.Env.of(
        tmp_path,
        f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
        FAULT_METRICS="1",
        FAULT_DISPATCH="inline",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    port = servers.free_port()
    server = servers.gunicorn(env, port)
    try:
        sent, refused = 12, 3
        for number in range(sent):
            assert servers.post(port, servers.payment(number, "metrics")) == 200
        for _ in range(refused):
            assert servers.post(port, b"[1, 2") == 400
        servers.wait_for(lambda: len(env.effects) >= 2 * sent, 60, "receivers")

        def samples() -> dict[tuple[str, frozenset[t.Any]], float]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/dealpos/metrics")
            return parse(connection.getresponse().read().decode())

        event = {"event": "payment_created"}
        servers.wait_for(
            lambda: total(samples(), "posweb_dispatch_outcomes_total", **event) == sent,
            60,
            "outcomes",
        )
        found = samples()
        assert total(found, "posweb_deliveries_received_total", **event) == sent + refused
        assert total(found, "posweb_deliveries_received_total", status_code="200") == sent
        assert total(found, "posweb_deliveries_stored_total", **event) == sent
        assert total(found, "posweb_deliveries_rejected_total", status_code="400") == refused
        assert total(found, "posweb_dispatch_outcomes_total", status="processed") == sent
        assert total(found, "posweb_receiver_duration_seconds_count", receiver="ledger") == sent
        # Read from the store by the worker that answered: not summed over two.
        assert total(found, "posweb_backlog_waiting") == 0
        assert len([k for k in found if k[0] == "posweb_backlog_waiting"]) == 1
    finally:
        servers.stop(server)
