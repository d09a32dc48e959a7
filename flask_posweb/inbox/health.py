"""Whether an inbox can take deliveries now: the one rule that the health URL
and ``flask posweb check`` both apply.

A store is healthy when it is **reachable** (its layout's revision can be
read), **current** (that revision is the one this code needs, or every
delivery is answered 503) and **writable** (a real write transaction commits:
``UPDATE posweb_alembic_version SET version_num = version_num``, through the
inbox's own writer, so a read-only SQLite folder, a PostgreSQL in
``default_transaction_read_only`` or a full disk fail it as a delivery
would). The backlog is reported, never judged: a queue that grows is for
alerts, not for a load balancer, which would only take the web nodes away.

The checks share one :class:`~.deadline.Deadline`, ``POSWEB_DATABASE_TIMEOUT``,
and run in this order: the revision, then the backlog (reads: snapshots that
never wait for a writer), then the write, which waits by what is left (all
of it, when someone else holds the lock); a check that would start after the
deadline is not run. The first read is bounded by the driver's own timeouts
(connect, busy wait), which are set to the same value (see :mod:`.engines`);
when it fails the store is unreachable, and nothing else is tried.

.. versionadded:: 0.3
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

from ..exceptions import StoreError
from .deadline import Deadline
from .records import Backlog

if t.TYPE_CHECKING:
    from .store import Inbox

__all__ = ["CHECKS", "Failure", "Health", "StoreHealth", "check_health"]

#: The checks, in the order they run; a failure names one of them.
CHECKS = ("reachable", "current", "backlog", "writable")

#: Said of a check that the deadline left no time for.
NO_TIME = "Not checked: POSWEB_DATABASE_TIMEOUT passed first."


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why one check failed.

    .. versionadded:: 0.3
    """

    #: One sentence, safe to show anyone: it names no host, user nor path.
    reason: str
    #: The driver's own words (``OperationalError: attempt to write a readonly
    #: database``), for the operator's shell and the log; ``None``: nothing more to say.
    detail: str | None = None


@dataclasses.dataclass(frozen=True)
class StoreHealth:
    """What the checks found of the store.

    .. versionadded:: 0.3
    """

    #: ``"sqlite"`` or ``"postgresql"``.
    dialect: str
    reachable: bool
    #: ``None``: not tried (unreachable, outdated, or no time left).
    writable: bool | None
    #: The store's revision (``None``: unknown, or no tables yet).
    revision: str | None
    #: The revision this code needs.
    head: str
    #: Pending, due and dead deliveries (``None``: not read).
    backlog: Backlog | None
    #: When the checks ran (naive UTC): what :meth:`Backlog.lag` is counted to.
    checked_at: dt.datetime

    @property
    def current(self) -> bool:
        """Whether the store's revision is the one this code needs."""
        return self.revision == self.head


@dataclasses.dataclass(frozen=True)
class Health:
    """The checks' report: healthy when no check failed.

    .. versionadded:: 0.3
    """

    #: ``None``: the app keeps no inbox (``POSWEB_INBOX = False``): nothing to check.
    store: StoreHealth | None
    #: The checks that failed, by name (see :data:`CHECKS`), in the order they ran.
    failures: dict[str, Failure] = dataclasses.field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.failures

    def as_json(self, *, details: bool = False) -> dict[str, t.Any]:
        """The report as JSON values (the health URL's answer).

        :param details: add the driver's words to each failure: for the
            operator's shell only, never an unauthenticated answer.
        """
        failed = {
            name: {"reason": f.reason, **({"detail": f.detail} if details else {})}
            for name, f in self.failures.items()
        }
        answer: dict[str, t.Any] = {"healthy": self.healthy, "failed": failed}
        if self.store is not None:
            answer["store"] = _store_json(self.store)
        return answer


def _store_json(store: StoreHealth) -> dict[str, t.Any]:
    backlog = None
    if store.backlog is not None:
        # Generic over the fields: ones added to Backlog later appear here too.
        backlog = {name: _json_value(value) for name, value in store.backlog._asdict().items()}
        backlog["lag"] = store.backlog.lag(store.checked_at)
    return {
        "dialect": store.dialect,
        "reachable": store.reachable,
        "writable": store.writable,
        "revision": store.revision,
        "head": store.head,
        "current": store.current,
        "backlog": backlog,
        "checked_at": _json_value(store.checked_at),
    }


def _json_value(value: t.Any) -> t.Any:
    """A stored (naive UTC) time in ISO 8601 with its zone; anything else as it is."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc).isoformat()
    return value


def check_health(inbox: Inbox | None) -> Health:
    """Check the store of an app (see the module docstring for the rule).

    :param inbox: ``None``: the app keeps no inbox, which is healthy.
    """
    if inbox is None:
        return Health(None)
    database = inbox.database
    deadline = Deadline(database.timeout)
    failures: dict[str, Failure] = {}
    found: dict[str, t.Any] = {"writable": None, "backlog": None}
    try:
        revision = database.revision()
    except StoreError as exc:
        failures["reachable"] = _failure(exc)
        return _report(inbox, False, None, found, failures)
    if revision is not None and revision != database.head():
        failures["current"] = Failure(
            f"The store is at revision {revision}, this code needs {database.head()}: "
            "run 'flask posweb db upgrade'."
        )
        return _report(inbox, True, revision, found, failures)
    # The read first: a snapshot, which never waits for a writer; the write
    # then waits by what is left (a lock held by someone else: all of it).
    found["backlog"] = _check(failures, "backlog", deadline, inbox.backlog)
    found["writable"] = _check(failures, "writable", deadline, lambda: _touch(inbox, deadline))
    if found["writable"] is None and failures["writable"].reason != NO_TIME:
        found["writable"] = False  # tried, and refused
    if revision is None and (found["writable"] or found["backlog"] is not None):
        revision = database.head()  # the first use created the layout, at the head
    return _report(inbox, True, revision, found, failures)


def _touch(inbox: Inbox, deadline: Deadline) -> bool:
    inbox.database.touch(deadline)
    return True


R = t.TypeVar("R")


def _check(
    failures: dict[str, Failure], name: str, deadline: Deadline, run: t.Callable[[], R]
) -> R | None:
    """Run one check unless the deadline passed; its failure recorded by name."""
    if deadline.passed:
        failures[name] = Failure(NO_TIME)
        return None
    try:
        return run()
    except StoreError as exc:
        failures[name] = _failure(exc)
        return None


def _failure(exc: StoreError) -> Failure:
    # No reason for an outdated store: its message is the command to run.
    return Failure(str(exc), exc.reason)


def _report(
    inbox: Inbox,
    reachable: bool,
    revision: str | None,
    found: dict[str, t.Any],
    failures: dict[str, Failure],
) -> Health:
    database = inbox.database
    store = StoreHealth(
        dialect=database.dialect,
        reachable=reachable,
        writable=found["writable"],
        revision=revision,
        head=database.head(),
        backlog=found["backlog"],
        checked_at=database.clock.python_now(),
    )
    return Health(store, failures)
