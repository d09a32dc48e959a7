"""Every transition of the delivery state machine, walked through the public API,
on each database; and the diagram in the docs is the one the code draws."""

from __future__ import annotations

import json
import pathlib
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb.dispatch import dispatch_delivery
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import states
from flask_posweb.inbox.states import Status
from flask_posweb.inbox.states import Transition
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import MakeApp

ROOT = pathlib.Path(__file__).parent.parent


class Walk:
    """An app whose one receiver does what a test asks, and ways to reach each status."""

    def __init__(self, app: Flask, posweb: PosWeb) -> None:
        self.app = app
        self.fail = False
        self.client: PosWebClient = app.test_client()  # type: ignore[assignment]
        self.inbox: Inbox = get_state(app).require_inbox()
        self.count = 0

        @posweb.on("payment_created")
        def receiver(sender: Flask, event: t.Any, **extra: t.Any) -> None:
            if self.fail:
                raise RuntimeError("asked to fail")

    def body(self, valid: bool = True) -> bytes:
        """A body of its own each time (distinct payments, so never duplicates)."""
        self.count += 1
        if not valid:
            return f'{{"ID": "bad-{self.count}"}}'.encode()
        body = json.loads(sample("payment_created"))
        body["ID"] = f"payment-{self.count}"
        return json.dumps(body).encode()

    def stored(self, valid: bool = True) -> int:
        """A pending delivery (worker mode: the request only stores it)."""
        delivery = self.inbox.admit(
            "payment_created",
            self.body(valid),
            {},
            receivers=get_state(self.app).require_dispatcher().receivers()["payment_created"],
        ).delivery
        return delivery.id

    def status(self, delivery_id: int) -> Status:
        delivery = self.inbox.get(delivery_id)
        assert delivery is not None
        return delivery.status

    def strand(self, delivery_id: int) -> int:
        """Strand a waiting delivery: as if no dispatcher with its receivers had
        been seen for ``POSWEB_STRANDED_AFTER`` (0 here: any time past is too long)."""
        self.inbox.hurry(Filter(ids=[delivery_id]))  # a failed one: due now
        stranded = self.inbox.strand(after=0).stranded
        assert [d.id for d in stranded] == [delivery_id]
        return delivery_id

    def dispatch(self, delivery_id: int) -> Status | None:
        return dispatch_delivery(self.app, delivery_id)

    def reach(self, status: Status | None) -> int:
        """A delivery in ``status``, brought there by the public API."""
        if status is None or status == "pending":
            return self.stored()
        if status == "rejected":
            response = self.client.deliver("payment_created", self.body(valid=False))
            return int(response.headers["X-PosWeb-Delivery"])
        if status == "stranded":
            return self.strand(self.stored())
        delivery_id = self.stored()
        self.fail = status in ("failed", "dead")
        self.dispatch(delivery_id)
        self.fail = False
        if status == "dead":  # the second (and last) attempt fails too
            self.inbox.hurry(Filter(ids=[delivery_id]))
            self.fail = True
            self.dispatch(delivery_id)
            self.fail = False
        assert self.status(delivery_id) == status
        return delivery_id


#: Attempts allowed for a walk: a dispatch from pending may end dead only when
#: one attempt is all there is; a failed delivery may fail again only with a third.
MAX_ATTEMPTS = {("pending", "dead"): 1, ("failed", "failed"): 3}


@pytest.fixture
def walk(
    make_app: MakeApp, database_url: str, posweb: PosWeb, request: pytest.FixtureRequest
) -> Walk:
    edge: Transition = request.node.callspec.params["edge"]
    app = make_app(
        POSWEB_DATABASE_URL=database_url,
        POSWEB_DISPATCH="worker",
        POSWEB_MAX_ATTEMPTS=MAX_ATTEMPTS.get((edge.source, edge.target), 2),
    )
    return Walk(app, posweb)


def _name(edge: Transition) -> str:
    return f"{edge.source or 'new'}-{edge.trigger}-{edge.target}"


@pytest.mark.parametrize("edge", states.TRANSITIONS, ids=_name)
def test_every_transition(
    walk: Walk, edge: Transition, make_app: MakeApp, database_url: str
) -> None:
    if edge.trigger == "store":
        assert walk.status(walk.stored()) == "pending"
    elif edge.trigger == "refuse":
        assert walk.status(walk.reach("rejected")) == "rejected"
    elif edge.trigger in states.DISPATCH_OUTCOMES:
        _dispatch(walk, edge, make_app, database_url)
    elif edge.trigger == "replay":
        delivery_id = _finished(walk, edge.source, make_app, database_url)
        assert walk.inbox.replay(Filter(ids=[delivery_id])) == 1
        assert walk.status(delivery_id) == edge.target
    elif edge.trigger == "strand":
        delivery_id = walk.strand(walk.reach(edge.source))
        assert walk.status(delivery_id) == edge.target
    elif edge.trigger == "revive":
        delivery_id = walk.reach(edge.source)
        delivery = walk.inbox.get(delivery_id)
        assert delivery is not None and delivery.receiver_set is not None
        assert walk.inbox.beat([delivery.receiver_set], every=0) == 1  # a dispatcher is back
        assert walk.inbox.strand(after=3600).revived == 1
        assert walk.status(delivery_id) == edge.target
    elif edge.trigger == "repeat":
        delivery_id = walk.reach(edge.source)
        if edge.source == "pending":
            # Taken at once by the repeat's request (its lease had run out).
            acceptable = get_state(walk.app).require_dispatcher().acceptable()
            taken = walk.inbox.claim(delivery_id, "request", 60, acceptable, repeat=True)
            assert taken is not None and taken.status == edge.target
        else:
            assert walk.inbox.repeat(delivery_id)
            assert walk.status(delivery_id) == edge.target
    else:  # pragma: no cover - a new trigger needs its own branch here
        raise AssertionError(f"no walk for {edge.trigger!r}")


def _dispatch(walk: Walk, edge: Transition, make_app: MakeApp, database_url: str) -> None:
    if edge.target == "unhandled":
        delivery_id = _unhandled(make_app, database_url, edge.source)
        assert delivery_id is not None
        return
    if edge.target == "rejected":
        if edge.source == "pending":
            delivery_id = walk.stored(valid=False)
        else:  # failed, then the stored body no longer validates (a schema change)
            delivery_id = walk.reach("failed")
            with walk.inbox.database.engines.durable.begin() as connection:
                connection.execute(
                    sa.text("UPDATE posweb_deliveries SET raw = :raw WHERE id = :id"),
                    {"raw": b'{"ID": ""}', "id": delivery_id},
                )
            walk.inbox.hurry(Filter(ids=[delivery_id]))
        assert walk.dispatch(delivery_id) == "rejected"
        return
    delivery_id = walk.reach(edge.source)
    if edge.source == "failed":
        walk.inbox.hurry(Filter(ids=[delivery_id]))
    walk.fail = edge.target in ("failed", "dead")
    assert walk.dispatch(delivery_id) == edge.target
    assert walk.status(delivery_id) == edge.target


def _unhandled(make_app: MakeApp, database_url: str, source: Status | None) -> int:
    """An app with no receiver for the event: its deliveries end unhandled."""
    app = make_app(
        POSWEB_DATABASE_URL=database_url, POSWEB_DISPATCH="worker", POSWEB_INBOX_NAME="bare"
    )
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    inbox = get_state(app).require_inbox()
    response = client.deliver("outlet_created", {"ID": f"{source}"})
    delivery_id = int(response.headers["X-PosWeb-Delivery"])
    if source == "failed":  # a 0.1 row that failed, taken by a dispatcher without receivers
        acceptable = get_state(app).require_dispatcher().acceptable()
        taken = inbox.claim(delivery_id, "w", 60, acceptable)
        assert taken is not None and inbox.finish(taken, "w", [], "failed", retry_in=0)
    assert inbox.get(delivery_id).status == (source or "pending")  # type: ignore[union-attr]
    assert dispatch_delivery(app, delivery_id) == "unhandled"
    return delivery_id


def _finished(walk: Walk, source: Status | None, make_app: MakeApp, database_url: str) -> int:
    if source == "unhandled":
        app = make_app(POSWEB_DATABASE_URL=database_url, POSWEB_DISPATCH="worker")
        response = app.test_client().deliver("outlet_created", {"ID": "u"})  # type: ignore[attr-defined]
        delivery_id = int(response.headers["X-PosWeb-Delivery"])
        assert dispatch_delivery(app, delivery_id) == "unhandled"
        walk.inbox = get_state(app).require_inbox()
        return delivery_id
    return walk.reach(source)


def test_the_table_covers_every_status() -> None:
    reached = {edge.target for edge in states.TRANSITIONS}
    left = {edge.source for edge in states.TRANSITIONS if edge.source}
    assert reached == set(states.STATUSES)
    # Stranded: neither taken by a dispatcher nor finished (retention keeps it).
    held = set(states.STRAND.values())
    assert held == {"stranded"} and not held & {*states.DISPATCHABLE, *states.TERMINAL}
    assert set(states.TERMINAL) == reached - set(states.DISPATCHABLE) - held
    assert left >= set(states.TERMINAL) | held  # every finished or stranded one can move on


@pytest.mark.parametrize(
    ("receivers", "failed", "attempts", "target"),
    [(0, 0, 1, "unhandled"), (2, 0, 1, "processed"), (2, 1, 1, "failed"), (2, 1, 8, "dead")],
)
def test_after_dispatch(receivers: int, failed: int, attempts: int, target: str) -> None:
    assert (
        states.after_dispatch(receivers=receivers, failed=failed, attempts=attempts, max_attempts=8)
        == target
    )


def test_the_documented_diagram_is_the_codes() -> None:
    """The docs embed the diagram the code draws (see docs/inbox.rst and README)."""
    readme = (ROOT / "README.md").read_text()
    assert "```mermaid\n" + states.mermaid() + "\n```" in readme
