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


#: Name and async-ness of each receiver seen (``inspect`` is slow for a hot path).
_DESCRIBED: weakref.WeakKeyDictionary[Receiver, tuple[str, bool]] = weakref.WeakKeyDictionary()


def _describe(receiver: Receiver) -> tuple[str, bool]:
    try:
        return _DESCRIBED[receiver]
    except (KeyError, TypeError):
        pass
    described = (receiver_name(receiver), inspect.iscoroutinefunction(receiver))
    try:
        _DESCRIBED[receiver] = described
    except TypeError:  # not weakly referenceable: described again next time
        pass
    return described


def named_receivers(signal: NamedSignal, app: Flask) -> list[tuple[str, Receiver]]:
    """The signal's receivers for ``app``, each with a name unique within the
    signal (``name#2`` for a second one of the same name, in connection order),
    ready to call (``async`` ones wrapped as Flask does for views)."""
    if signal.is_muted or not signal.receivers:
        return []
    named: list[tuple[str, Receiver]] = []
    seen: set[str] = set()
    for receiver in signal.receivers_for(app):
        name, is_async = _describe(receiver)
        if name in seen:
            base, number = name, 2
            while (name := f"{base}#{number}") in seen:
                number += 1
        seen.add(name)
        named.append((name, app.ensure_sync(receiver) if is_async else receiver))
    return named


@functools.lru_cache(maxsize=1024)
def _receiver_set(event: str, names: frozenset[str]) -> ReceiverSet:
    return ReceiverSet(event, names)


def receiver_set(signal: NamedSignal, app: Flask, event: str) -> ReceiverSet:
    """The receivers ``app`` has for ``event``, as the inbox records them."""
    return _receiver_set(event, frozenset(name for name, _ in named_receivers(signal, app)))


def notify(signal: NamedSignal, app: Flask, **kwargs: t.Any) -> None:
    """Send a lifecycle signal; a receiver that raises is logged, never propagated."""
    if not signal.receivers:
        return
    for name, receiver in named_receivers(signal, app):
        try:
            receiver(app, **kwargs)
        except Exception:
            logger.exception("Receiver %s of signal %r failed", name, signal.name)


def call_receivers(
    app: Flask,
    event: WebhookEvent[t.Any],
    receivers: list[tuple[str, Receiver]],
    *,
    generation: int = 0,
    skip: Container[str] = (),
    before_each: Callable[[], bool] | None = None,
) -> list[Attempt]:
    """Call each receiver (except those in ``skip``) with ``event``, in isolation.

    :param before_each: called before each receiver; when it returns ``False``
        (the dispatcher lost its lease) no further receiver runs.
    :returns: one :class:`~flask_posweb.inbox.Attempt` per receiver called.
    """
    outcomes = []
    for name, receiver in receivers:
        if name in skip:
            continue
        if before_each is not None and not before_each():
            break
        started, clock = utcnow(), time.perf_counter()
        error = None
        try:
            receiver(app, event=event)
        except Exception as exc:
            error = traceback.format_exc()
            logger.exception(
                "Receiver %s failed on %s (delivery %s, attempt %s)",
                name,
                event.name,
                event.id,
                event.attempt,
            )
            notify(signals.receiver_failed, app, event=event, receiver=name, error=exc)
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
