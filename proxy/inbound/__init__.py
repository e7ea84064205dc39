"""The endpoints of the APIs clients speak besides chat completions (`translators.INBOUND`:
the Messages API at /v1/messages and its token counter; the Responses API at /v1/responses,
with its kept responses, `kept.py`).

Each API is data (`translators/_inbound.py`): its codec turns a request into the chat form
that every translator serves, and the chat answer or stream back into the API's shape.
`serve.py` runs that chat form through the chat endpoints' own machinery
(`routes.serve_request`: authentication, routing and `default`, budgets, rate limits,
`attempts.serve_route` with its retries, fallbacks and hosted quota, usage rows under the
API's name), so these endpoints are one system with chat completions. Where the routed
translator has the API natively (`Translator.native`), an attempt sends the client's own
body there and relays the answer as it came. Errors, from a bad key to a failure mid-stream,
are in the API's shape (`proxy.errors.shape_errors`, the stream's framing).
"""

from __future__ import annotations

from proxy.inbound.serve import INBOUND_ROUTES

__all__ = ["INBOUND_ROUTES"]
