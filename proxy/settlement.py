"""Correcting, after the answer, what a request took up front: the rate limits' token
counters (`proxy/ratelimits.py`, the prompt's estimate) and the budgets' holds
(`proxy/budgets.py`, the estimated cost). `RequestRecord.finish` is synchronous, so the
correction runs as a task; the route awaits it before answering (shielded: a client that
leaves does not cancel it), so the caller's next request sees it. A failed correction is
accounting: one log line, the answer goes out all the same."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from proxy.store import StoreUnavailable

log = logging.getLogger("modelport")

# Corrections in flight: the event loop keeps only weak references to tasks.
_running: set[asyncio.Task[None]] = set()


@dataclass(slots=True, eq=False)
class Settlement:
    """At most one correction per request."""

    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _done: bool = False

    def start(self, correct: Callable[[], Awaitable[None]], what: str) -> None:
        """Run `correct()` in the background, once (a second call does nothing); `what`
        names it in a failure's log line."""
        if self._done:
            return
        self._done = True
        try:
            task = asyncio.get_running_loop().create_task(_logged(correct, what))
        except RuntimeError:  # no loop: the process is going away
            return
        self._task = task
        _running.add(task)
        task.add_done_callback(_running.discard)

    def skip(self) -> None:
        """Nothing to correct: later calls to `start` do nothing either."""
        self._done = True

    async def settled(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)


async def _logged(correct: Callable[[], Awaitable[None]], what: str) -> None:
    try:
        await correct()
    except StoreUnavailable as exc:  # an outage: one line, no traceback
        log.warning("could not settle %s: %s", what, exc.message)
    except Exception:
        log.warning("could not settle %s", what, exc_info=True)
