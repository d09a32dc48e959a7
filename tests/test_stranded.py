"""No delivery stranded by a deploy (issue 18).

A delivery expects the receivers of the app that stored it. After a deploy
that renames or removes one, no dispatcher may take it: it becomes
``stranded`` once it has waited ``POSWEB_STRANDED_AFTER`` for receivers no
live dispatcher has, and an operator adopts it for the receivers deployed now.
Each "version" here is an app with its own receivers on one database, as old
and new code are during a rolling deploy; time is moved by hand.
"""

from __future__ import annotations

import json
import re
import typing as t

import pytest
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import signals
from flask_posweb.dispatch.dispatcher import Dispatcher
from flask_posweb.dispatch.runner import Runner
from flask_posweb.inbox import Filter
from flask_posweb.inbox import Inbox
from flask_posweb.inbox import utcnow
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_signals

from .conftest import KEY
from .conftest import Clock

AFTER = 1800  # POSWEB_STRANDED_AFTER, 30 minutes
MINUTE = 60


class Version:
    """One version of the shop's code: an app with these receivers, a dispatcher
    (its background thread or worker) on a clock the test moves."""

    def __init__(
        self,
        database_url: str,
        clock: Clock,
        receivers: dict[str, t.Callable[..., t.Any]],
        **config: t.Any,
    ) -> None:
        posweb = PosWeb()
        self.ran: list[tuple[str, int]] = []
        for name, work in receivers.items():
            posweb.on("payment_created", name=name)(self._receiver(name, work))
        self.app = Flask(__name__)
        self.app.config.update(
            TESTING=True,
            SECRET_KEY="stranded-secret-0123456789",
            POSWEB_API_KEYS=[KEY],
            POSWEB_DATABASE_URL=database_url,
            POSWEB_DISPATCH="worker",
            POSWEB_STRANDED_AFTER=AFTER,
            POSWEB_RETRY_BACKOFF=MINUTE,
            **config,
        )
        self.app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
        self.app.test_client_class = PosWebClient
        self.inbox = Inbox.from_url(database_url, clock=clock)
        self.dispatcher = Dispatcher(
            self.app, self.inbox, get_state(self.app).settings, clock=clock.monotonic
        )
        self.runner = Runner(self.dispatcher, "worker")

    def _receiver(self, name: str, work: t.Callable[..., t.Any]) -> t.Callable[..., None]:
        def receiver(sender: Flask, event: t.Any, **extra: t.Any) -> None:
            self.ran.append((name, event.id))
            work()

        return receiver

    def store(self, n: int) -> int:
        """A payment received by this version's web tier."""
        body = json.loads(sample("payment_created"))
        body["ID"] = f"payment-{n}"
        receivers = self.dispatcher.receivers()["payment_created"]
        raw = json.dumps(body).encode()
        return self.inbox.admit("payment_created", raw, {}, receivers=receivers).delivery.id

    def work(self) -> int:
        """One pass of this version's dispatcher, housekeeping included."""
        done = self.runner.drain()
        self.runner.housekeep(force=True)
        return done

    def status(self, delivery_id: int) -> str:
        found = self.inbox.get(delivery_id)
        assert found is not None
        return found.status

    def close(self) -> None:
        self.inbox.close()
        get_state(self.app).close()


def ok() -> None:
    pass


def down() -> None:
    raise ConnectionError("the accounting endpoint is down")


@pytest.fixture
def versions(database_url: str) -> t.Iterator[t.Callable[..., Version]]:
    clock = Clock()
    clock.now = utcnow()  # the apps' own commands (the CLI, the log page) use real time
    made: list[Version] = []

    def make(receivers: dict[str, t.Callable[..., t.Any]], **config: t.Any) -> Version:
        made.append(Version(database_url, clock, receivers, **config))
        return made[-1]

    make.clock = clock  # type: ignore[attr-defined]
    yield make
    for version in made:
        version.close()


def test_a_renamed_receiver_strands_its_deliveries_until_they_are_adopted(
    versions: t.Callable[..., Version], caplog: pytest.LogCaptureFixture
) -> None:
    clock: Clock = versions.clock  # type: ignore[attr-defined]
    old = versions({"ledger": down})
    delivery_id = old.store(1)
    assert old.work() == 1 and old.status(delivery_id) == "failed"  # the endpoint was down
    # The deploy renames the receiver (no stable name=): the old code is gone.
    new = versions({"post_to_ledger": ok})
    clock.advance(AFTER)
    assert new.work() == 0 and old.status(delivery_id) == "failed"  # due for AFTER - 1 minute
    with captured_signals(new.app, signals.webhook_stranded) as sent:
        clock.advance(2 * MINUTE)  # due for AFTER + 1 minute (the retry was due after one)
        assert new.work() == 0
    assert new.status(delivery_id) == "stranded"
    assert [(s.kwargs["delivery_id"], s.kwargs["receivers"]) for s in sent] == [
        (delivery_id, frozenset({"ledger"}))
    ]
    assert "1 payment_created delivery stranded" in caplog.text
    assert "no live dispatcher has (ledger)" in caplog.text
    assert new.inbox.counts()["stranded"] == 1 and new.inbox.backlog().stranded == 1
    assert new.inbox.backlog().waiting == 0  # not waiting for a dispatcher any more
    clock.advance(AFTER)
    assert new.work() == 0 and new.status(delivery_id) == "stranded"  # nothing runs it
    assert new.ran == []

    cli = new.app.test_cli_runner()
    listed = cli.invoke(args=["posweb", "list", "--status", "stranded"])
    assert listed.exit_code == 0 and f"{delivery_id}" in listed.output
    plain = cli.invoke(args=["posweb", "replay", str(delivery_id)])
    assert "1 lacking receivers" in plain.output and "--adopt" in plain.output
    assert new.ran == []
    adopted = cli.invoke(args=["posweb", "replay", "--adopt", "--status", "stranded"])
    assert adopted.exit_code == 0, adopted.output
    assert "1 delivery replayed: 1 processed" in adopted.output
    assert new.status(delivery_id) == "processed" and new.ran == [("post_to_ledger", delivery_id)]
    clock.advance(AFTER)
    assert new.work() == 0 and len(new.ran) == 1  # once


def test_adopting_after_a_removal_runs_only_what_has_not_succeeded(
    versions: t.Callable[..., Version],
) -> None:
    """A receiver removed on purpose: the documented command adopts at once,
    and a receiver that already succeeded is not run again."""
    old = versions({"ledger": ok, "mailer": down})
    delivery_id = old.store(1)
    assert old.work() == 1 and old.status(delivery_id) == "failed"
    assert old.ran == [("ledger", delivery_id), ("mailer", delivery_id)]
    new = versions({"ledger": ok})  # the mailer is gone
    assert new.work() == 0 and new.status(delivery_id) == "failed"
    cli = new.app.test_cli_runner()
    args = ["posweb", "replay", "--adopt", "--status", "pending", "--status", "failed"]
    result = cli.invoke(args=[*args, "--event", "payment_created"])
    assert result.exit_code == 0 and "1 processed" in result.output, result.output
    assert new.status(delivery_id) == "processed"
    assert new.ran == []  # the ledger had succeeded; the mailer is not this app's


def test_a_rolling_deploy_strands_nothing_and_runs_everything_once(
    versions: t.Callable[..., Version],
) -> None:
    """Old and new code side by side on one database: each takes what it has
    the receivers of (new code also the old code's), both stay alive, and once
    the old code is gone the new one takes what the old web tier stored last."""
    clock: Clock = versions.clock  # type: ignore[attr-defined]
    old = versions({"ledger": ok})
    new = versions({"ledger": ok, "mailer": ok})
    stored: dict[int, str] = {}
    for n in range(12):
        version = old if n % 2 else new
        stored[version.store(n)] = "old" if version is old else "new"
        clock.advance(10 * MINUTE)  # the deploy takes two hours
        (old if n % 3 else new).work()
        (new if n % 3 else old).work()
    # The last old web process stores one more on its way out; then it is gone.
    last = old.store(99)
    stored[last] = "old"
    for _ in range(4):
        clock.advance(AFTER)
        new.work()
    assert {new.status(i) for i in stored} == {"processed"}
    assert new.inbox.counts()["stranded"] == 0
    runs = [i for _, i in old.ran + new.ran if _ == "ledger"]
    assert sorted(runs) == sorted(stored)  # every delivery's ledger ran once
    # New code runs its receivers, the mailer too, on whatever it takes; old
    # code never takes what new code stored (it lacks the mailer).
    by_new = sorted(i for name, i in new.ran if name == "ledger")
    assert sorted(i for name, i in new.ran if name == "mailer") == by_new
    assert {i for i, v in stored.items() if v == "new"} <= set(by_new)
    assert last in by_new and len(by_new) < len(stored)  # old code took its share


def test_a_rollback_revives_what_was_stranded(versions: t.Callable[..., Version]) -> None:
    clock: Clock = versions.clock  # type: ignore[attr-defined]
    old = versions({"ledger": down})
    delivery_id = old.store(1)
    old.work()
    new = versions({"renamed": ok})
    clock.advance(AFTER + 2 * MINUTE)  # the retry was due after a minute
    new.work()
    assert new.status(delivery_id) == "stranded"
    old.ran.clear()
    rolled_back = versions({"ledger": ok})  # the old code is deployed again
    rolled_back.work()  # says it is alive, then revives the delivery
    assert rolled_back.status(delivery_id) == "pending"
    assert rolled_back.work() == 1 and rolled_back.status(delivery_id) == "processed"
    assert rolled_back.ran == [("ledger", delivery_id)] and new.ran == []


def test_a_busy_dispatcher_keeps_its_deliveries_from_being_stranded(
    versions: t.Callable[..., Version],
) -> None:
    """A backlog older than POSWEB_STRANDED_AFTER whose dispatchers are alive
    is a backlog, not stranded deliveries."""
    clock: Clock = versions.clock  # type: ignore[attr-defined]
    shop = versions({"ledger": ok})
    ids = [shop.store(n) for n in range(5)]
    for _ in range(3):
        clock.advance(AFTER)
        shop.dispatcher.beat()  # alive, but too busy to take these
        shop.runner.housekeep(force=True)
    assert {shop.status(i) for i in ids} == {"pending"}
    assert shop.work() == 5


def test_the_log_page_counts_them_and_adopts_one(versions: t.Callable[..., Version]) -> None:
    clock: Clock = versions.clock  # type: ignore[attr-defined]
    old = versions({"ledger": down})
    delivery_id = old.store(1)
    old.work()
    new = versions(
        {"post_to_ledger": ok}, POSWEB_DASHBOARD=True, POSWEB_DASHBOARD_ACCESS=lambda: True
    )
    clock.advance(AFTER + 2 * MINUTE)  # the retry was due after a minute
    new.work()
    client = new.app.test_client()
    listing = client.get("/dealpos/log/?status=stranded").get_data(as_text=True)
    assert f'href="/dealpos/log/{delivery_id}"' in listing
    page = client.get(f"/dealpos/log/{delivery_id}").get_data(as_text=True)
    assert "It expects receivers this app does not have: <code>ledger</code>" in page
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    answer = client.post(f"/dealpos/log/{delivery_id}/adopt", data={"csrf_token": found[1]})
    assert answer.status_code == 303
    after = client.get(f"/dealpos/log/{delivery_id}").get_data(as_text=True)
    assert "Replayed just now: the delivery is now processed." in after
    assert new.status(delivery_id) == "processed" and new.ran == [("post_to_ledger", delivery_id)]
    assert "Adopt delivery" not in after


def test_a_beat_writes_only_when_a_set_was_not_seen_lately(
    versions: t.Callable[..., Version],
) -> None:
    clock: Clock = versions.clock  # type: ignore[attr-defined]
    shop = versions({"ledger": ok})
    shop.store(1)  # registers the set, seen now
    stored = shop.dispatcher.receivers()["payment_created"].key
    keys = shop.dispatcher.acceptable()  # every event's set: only one is stored
    assert stored in keys and len(keys) > 1
    assert shop.inbox.beat(keys, every=MINUTE) == 0  # seen just now
    clock.advance(2 * MINUTE)
    assert shop.inbox.beat(keys, every=MINUTE) == 1
    assert shop.inbox.unseen_sets(AFTER) == []
    clock.advance(AFTER + 1)
    assert shop.inbox.unseen_sets(AFTER) == [stored]
    assert shop.inbox.replay(Filter(ids=[999])) == 0
