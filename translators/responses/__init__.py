"""OpenAI's Responses API for clients of the gateway (the openai SDK's `client.responses`,
agent frameworks built on it), as the `InboundApi` `RESPONSES` (translators/_inbound.py):
requests (`request.py`), answers, stream events and errors (`codec.py`), and how answers
are kept (`Keeping`): with `store` (the default) a response is kept, per tenant, for the
retention period; `previous_response_id` continues one (its input and output items go
before the new input, its `instructions` do not); `GET`/`DELETE /v1/responses/{id}` and
`GET /v1/responses/{id}/input_items` read and remove them. A provider that serves the API
itself (OpenAI: `native.py`, `CompatibleSpec.native`) gets the client's body instead of the
chat form, and its answers are kept under its own ids. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from translators._inbound import InboundApi, InboundChatRequest, Keeping, Kept
from translators.errors import ApiError, bad_request
from translators.responses.codec import (
    ResponsesEncoder,
    error_events,
    error_of,
    from_chat,
)
from translators.responses.native import answer_in_event
from translators.responses.request import (
    ResponsesChatRequest,
    ResponsesRequest,
    to_chat,
)
from translators.types import JSONObject

__all__ = ["RESPONSES", "history_of", "items_page", "keep", "resume"]

PAGE_LIMIT = 100  # input_items: OpenAI's largest page


def history_of(kept: Kept) -> list[JSONObject]:
    """The conversation a follow-up continues: what the kept response continued, its input,
    its output."""
    output = kept.answer.get("output")
    return [*kept.context, *kept.items, *(output if isinstance(output, list) else [])]


def resume(req: ResponsesRequest, kept: Kept) -> ResponsesRequest:
    return req.continuing(history_of(kept))


def previous(req: ResponsesRequest) -> str | None:
    return req.previous_response_id


def keep(req: InboundChatRequest, answer: JSONObject) -> Kept | None:
    if not isinstance(req, ResponsesChatRequest) or not req.origin.store:
        return None
    # A vendor's own answer (a native endpoint) keeps the vendor's id: the client has that one.
    return Kept(str(answer.get("id") or req.response_id), answer, req.items, req.origin.history)


def not_found(response_id: str) -> ApiError:
    return ApiError(404, f"Response with id '{response_id}' not found.", "invalid_request_error", None,
                    "previous_response_id")


def deleted(response_id: str) -> JSONObject:
    return {"id": response_id, "object": "response.deleted", "deleted": True}


def items_page(kept: Kept, query: Mapping[str, str]) -> JSONObject:
    """OpenAI's input_items list: `order` desc (the default) or asc, `limit` 1..100 (20),
    `after` an item id."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("order must be 'asc' or 'desc'", "order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise bad_request("limit must be an integer", "limit") from None
    if not 1 <= limit <= PAGE_LIMIT:
        raise bad_request(f"limit must be between 1 and {PAGE_LIMIT}", "limit")
    items = list(kept.items) if order == "asc" else list(reversed(kept.items))
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise bad_request(f"No input item with id '{after}'.", "after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None, "has_more": len(items) > limit}


RESPONSES = InboundApi(
    name="responses",
    path="/v1/responses",
    request=ResponsesRequest,
    to_chat=to_chat,
    from_chat=from_chat,
    encoder=ResponsesEncoder,
    error=error_of,
    error_events=error_events,
    keeping=Keeping(previous=previous, resume=resume, keep=keep, not_found=not_found, deleted=deleted,
                    items_page=items_page, answer_in_event=answer_in_event),
)
