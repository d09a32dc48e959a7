"""Receivers: their names, and calling each one in isolation.

blinker's ``send`` stops at the first receiver that raises; here every
receiver runs, each failure is logged with its traceback and signalled, and
each outcome is kept, so that a retry re-runs only the receivers that failed
(octokit/webhooks does the same with its handlers).

A receiver's name is what the inbox records, so it must be the same in every
process that loads the app, whatever the import name (``app`` in the web
tier, ``shop.app`` in a worker): it is the function's ``__qualname__``, or the
``name`` given to :meth:`~flask_posweb.PosWeb.on`.

.. versionadded:: 0.2
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import traceback
import typing as t
import weakref
from collections.abc import Callable
from collections.abc import Container
from collections.abc import Mapping

from blinker import NamedSignal

from .. import signals
from ..inbox import Attempt
from ..inbox import ReceiverSet
from ..inbox import utcnow

if t.TYPE_CHECKING:
    from flask import Flask

    from ..events import WebhookEvent

__all__ = [
    "NAME_ATTRIBUTE",
    "Named",
    "call_receivers",
    "named_receivers",
    "notify",
    "receiver_name",
    "receiver_set",
]

logger = logging.getLogger("flask_posweb")

#: Set by ``PosWeb.on(..., name=...)`` on the function.
NAME_ATTRIBUTE = "__posweb_name__"

Receiver = Callable[..., t.Any]


def receiver_name(receiver: Receiver) -> str:
    """The name a receiver is recorded under: its given name, or its qualified
    name without the module (which depends on how the app was imported)."""
    given = getattr(receiver, NAME_ATTRIBUTE, None)
    if isinstance(given, str):
        return given
    return getattr(receiver, "__qualname__", None) or type(receiver).__qualname__


class Named(t.NamedTuple):
    """A receiver ready to call, with its name."""

    name: str
    #: The receiver (``async`` ones wrapped as Flask does for views).
    call: Receiver
    #: The keyword arguments it names; ``None`` when it takes ``**extra``.
    keywords: frozenset[str] | None

    def __call__(self, app: Flask, extra: Mapping[str, t.Any], **kwargs: t.Any) -> t.Any:
        """Call it with ``kwargs``, and with those of ``extra`` it takes: an extra
        argument added in a later version (``merchant``, 0.3) never breaks a
        receiver written before it."""
        if self.keywords is None:
            return self.call(app, **extra, **kwargs)
        taken = {key: value for key, value in extra.items() if key in self.keywords}
        return self.call(app, **taken, **kwargs)


#: Name, async-ness and keywords of each receiver seen (``inspect`` is slow for a hot path).
_DESCRIBED: weakref.WeakKeyDictionary[Receiver, tuple[str, bool, frozenset[str] | None]] = (
    weakref.WeakKeyDictionary()
)


def _keywords(receiver: Receiver) -> frozenset[str] | None:
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):  # a builtin or a C callable: give it nothing extra
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is not p.VAR_POSITIONAL)


def _describe(receiver: Receiver) -> tuple[str, bool, frozenset[str] | None]:
    try:
        return _DESCRIBED[receiver]
    except (KeyError, TypeError):
        pass
    described = (
        receiver_name(receiver),
        inspect.iscoroutinefunction(receiver),
        _keywords(receiver),
    )
    try:
        _DESCRIBED[receiver] = described
    except TypeError:  # not weakly referenceable: described again next time
        pass
    return described


def named_receivers(signal: NamedSignal, app: Flask) -> list[Named]:
    """The signal's receivers for ``app``, each with a name unique within the
    signal (``name#2`` for a second one of the same name, in connection order),
    ready to call (``async`` ones wrapped as Flask does for views)."""
    if signal.is_muted or not signal.receivers:
        return []
    named: list[Named] = []
    seen: set[str] = set()
    for receiver in signal.receivers_for(app):
        name, is_async, keywords = _describe(receiver)
        if name in seen:
            base, number = name, 2
            while (name := f"{base}#{number}") in seen:
                number += 1
        seen.add(name)
        named.append(Named(name, app.ensure_sync(receiver) if is_async else receiver, keywords))
    return named


@functools.lru_cache(maxsize=1024)
def _receiver_set(event: str, names: frozenset[str]) -> ReceiverSet:
    return ReceiverSet(event, names)


def receiver_set(signal: NamedSignal, app: Flask, event: str) -> ReceiverSet:
    """The receivers ``app`` has for ``event``, as the inbox records them."""
    return _receiver_set(event, frozenset(named.name for named in named_receivers(signal, app)))


def notify(
    signal: NamedSignal,
    app: Flask,
    *,
    merchant: str | None = None,
    **kwargs: t.Any,
) -> None:
    """Send a lifecycle signal; a receiver that raises is logged, never propagated.

    :param merchant: who sent the delivery or call: given to the receivers
        that take it (a ``merchant`` argument, or ``**extra``).
    """
    if not signal.receivers:
        return
    for receiver in named_receivers(signal, app):
        try:
            receiver(app, {"merchant": merchant}, **kwargs)
        except Exception:
            logger.exception("Receiver %s of signal %r failed", receiver.name, signal.name)


def call_receivers(
    app: Flask,
    event: WebhookEvent[t.Any],
    receivers: list[Named],
    *,
    generation: int = 0,
    skip: Container[str] = (),
    before_each: Callable[[], bool] | None = None,
) -> list[Attempt]:
    """Call each receiver (except those in ``skip``) with ``event`` (and with the
    event's ``merchant`` if it takes it), in isolation.

    :param before_each: called before each receiver; when it returns ``False``
        (the dispatcher lost its lease) no further receiver runs.
    :returns: one :class:`~flask_posweb.inbox.Attempt` per receiver called.
    """
    outcomes = []
    extra = {"merchant": event.merchant}
    for receiver in receivers:
        name = receiver.name
        if name in skip:
            continue
        if before_each is not None and not before_each():
            break
        started, clock = utcnow(), time.perf_counter()
        error = None
        try:
            receiver(app, extra, event=event)
        except Exception as exc:
            error = traceback.format_exc()
            logger.exception(
                "Receiver %s failed on %s (delivery %s, attempt %s)",
                name,
                event.name,
                event.id,
                event.attempt,
            )
            notify(
                signals.receiver_failed,
                app,
                event=event,
                receiver=name,
                error=exc,
                merchant=event.merchant,
            )
        elapsed = (time.perf_counter() - clock) * 1000
        outcomes.append(
            Attempt(
                name,
                event.attempt,
                generation,
                error is None,
                error,
                started,
                elapsed,
                event.is_replay,
            )
        )
    return outcomes
