"""The admin API as the browser tests' view of the truth: a bearer token, and every call
checks its status. Plain httpx, so it works in the browser's thread (see conftest.py)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.harness import GatewayProcess


class AdminAPI:
    def __init__(self, gw: GatewayProcess, token: str | None = None) -> None:
        self.base = gw.base_url + "/admin/v1"
        self.headers = {"Authorization": f"Bearer {token or gw.admin_token()}"}

    def call(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        """The body (a list endpoint's `data`) of a call that must answer `status`."""
        response = httpx.request(method, self.base + path, headers=self.headers, json=json, timeout=15)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        body = response.json()
        return body["data"] if isinstance(body, dict) and body.get("object") == "list" else body

    def get(self, path: str) -> Any:
        return self.call("GET", path)
