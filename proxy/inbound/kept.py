"""Answers kept for later requests, for an API that keeps them (`InboundApi.keeping`: the
Responses API's `store` and `previous_response_id`), in the store's `kept_answers`
(`proxy/store/kept.py`), per tenant.

- `continued`: when a request names a kept answer it continues, that answer is read (this
  tenant's, not expired; else the API's 404) and the codec puts its conversation in the
  request, before the chat form is made.
- `keeper`: the hook that keeps a request's whole answer (`InboundChatRequest.on_answer`):
  awaited before a whole answer is sent, and before a stream's last event, so that a
  follow-up the client sends once it has the answer finds it. The writes are grouped
  (`_GroupCommit`): answers that finish while a write is under way share the next
  transaction, each request still waiting for its own commit (the bench's
  `responses-stored` scenario measures it).
- `kept_routes`: `GET` / `DELETE {path}/{id}` and `GET {path}/{id}/input_items`.

What is kept is the tenant's users' content: it is written because the request asked
(`store`), never logged; a failed write is logged without it and the answer still goes out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HTTPRoute

from proxy.auth import authenticate
from proxy.errors import JSONResponse
from proxy.gateway import Gateway
from proxy.inbound.side import side_endpoint
from proxy.store import StoreApi
from proxy.store.kept import KeptRow
from proxy.tenants import Caller
from translators._inbound import InboundApi, InboundChatRequest, Keeping, Kept
from translators.types import JSONObject

__all__ = ["continued", "keeper", "kept_routes"]

log = logging.getLogger("modelport")
_DAY = 86400


def _kept(row: KeptRow) -> Kept:
    return Kept(row.id, orjson.loads(row.answer), orjson.loads(row.items), orjson.loads(row.context))


async def continued(api: InboundApi, keeping: Keeping, parsed: Any, request: Request, gateway: Gateway) -> Any:
    """The parsed request, with the conversation of the kept answer it continues (if any)."""
    answer_id = keeping.previous(parsed)
    if answer_id is None:
        return parsed
    caller = await authenticate(request, gateway.directory)
    row = await gateway.store.kept_answer(caller.tenant.id, api.name, answer_id, int(time.time()))
    if row is None:
        raise keeping.not_found(answer_id)
    return keeping.resume(parsed, _kept(row))


def keeper(api: InboundApi, keeping: Keeping, req: InboundChatRequest, tenant_id: str,
           gateway: Gateway) -> Callable[[JSONObject], Awaitable[None]]:
    async def keep(answer: JSONObject) -> None:
        kept = keeping.keep(req, answer)
        if kept is None:
            return
        now = int(time.time())
        row = KeptRow(kept.id, now, now + gateway.settings.responses_retention_days * _DAY,
                      orjson.dumps(kept.answer).decode(), orjson.dumps(kept.items).decode(),
                      orjson.dumps(kept.context).decode())
        try:
            await _group_commit(gateway.store).keep(tenant_id, api.name, row)
        except Exception:  # the answer still goes out; the content stays out of the log
            log.exception("keeping %s answer %s failed", api.name, kept.id)
    return keep


class _GroupCommit:
    """One transaction for every answer waiting to be kept, in this worker."""

    def __init__(self, store: StoreApi) -> None:
        self._store = store
        self._waiting: list[tuple[str, str, KeptRow, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def keep(self, tenant_id: str, api: str, row: KeptRow) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((tenant_id, api, row, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._store.keep_answers([(t, a, r) for t, a, r, _ in batch], int(time.time()))
                except Exception as exc:
                    for *_, done in batch:
                        if not done.done():  # a request that left no longer waits
                            done.set_exception(exc)
                else:
                    for *_, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None


_group_commits: weakref.WeakKeyDictionary[StoreApi, _GroupCommit] = weakref.WeakKeyDictionary()


def _group_commit(store: StoreApi) -> _GroupCommit:
    group = _group_commits.get(store)
    if group is None:
        group = _group_commits[store] = _GroupCommit(store)
    return group


def kept_routes(api: InboundApi, keeping: Keeping) -> list[HTTPRoute]:
    async def retrieve(request: Request, gateway: Gateway, caller: Caller, _: str) -> Response:
        answer_id = request.path_params["id"]
        row = await gateway.store.kept_answer(caller.tenant.id, api.name, answer_id, int(time.time()))
        if row is None:
            raise keeping.not_found(answer_id)
        if request.url.path.endswith("/input_items"):
            return JSONResponse(keeping.items_page(_kept(row), request.query_params))
        return Response(row.answer.encode(), media_type="application/json")

    async def delete(request: Request, gateway: Gateway, caller: Caller, _: str) -> Response:
        answer_id = request.path_params["id"]
        if not await gateway.store.forget_answer(caller.tenant.id, api.name, answer_id, int(time.time())):
            raise keeping.not_found(answer_id)
        return JSONResponse(keeping.deleted(answer_id))

    read = side_endpoint(api, "reading a kept answer", retrieve)
    return [HTTPRoute(f"{api.path}/{{id}}", read, methods=["GET"]),
            HTTPRoute(f"{api.path}/{{id}}", side_endpoint(api, "deleting a kept answer", delete), methods=["DELETE"]),
            HTTPRoute(f"{api.path}/{{id}}/input_items", read, methods=["GET"])]
