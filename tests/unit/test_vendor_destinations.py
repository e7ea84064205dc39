"""Vendor rules on where a credential may go (issue 10): Replicate's returned URLs only on
Replicate's own hosts, Azure's https rule for a `base_url` override too, and the secrets
that ERNIE, Zhipu and Spark derive from the key scrubbed from errors."""

from __future__ import annotations

from typing import Any

import pytest

from keystore.models import validate_credential
from translators import REGISTRY
from translators._compatible import CHAT, CompatibleTranslator
from translators.base import CallContext
from translators.errors import ApiError, UpstreamError, scrubbing
from translators.replicate import ReplicateTranslator, _may_follow
from translators.spark import signed_parts, signed_url
from translators.zhipu import SPEC as ZHIPU
from translators.zhipu import derived_secrets

REPLICATE = "https://api.replicate.com/v1"
LOCAL = "http://127.0.0.1:9999/v1"


@pytest.mark.parametrize(("url", "base", "followed"), [
    ("https://api.replicate.com/v1/predictions/abc", REPLICATE, True),
    ("https://api.replicate.com/v1/predictions/abc/cancel", LOCAL, True),
    ("https://streaming-api.svc.us.c.replicate.net/v1/predictions/abc", REPLICATE, True),
    ("https://stream-b.replicate.com/v1/files/abc", REPLICATE, True),
    ("http://127.0.0.1:9999/v1/predictions/abc", LOCAL, True),             # base_url's own origin (tests)
    ("https://evil.example/v1/predictions/abc", REPLICATE, False),
    ("https://api.replicate.com.evil.example/v1/x", REPLICATE, False),
    ("https://evilreplicate.com/v1/x", REPLICATE, False),
    ("https://stream.evil.example/replicate.com", REPLICATE, False),
    ("http://api.replicate.com/v1/predictions/abc", REPLICATE, False),     # clear text
    ("https://user@api.replicate.com/v1/predictions/abc", REPLICATE, False),
    ("https://api.replicate.com:8443/v1/predictions/abc", REPLICATE, False),
    ("http://169.254.169.254/latest/meta-data/", REPLICATE, False),
    ("http://127.0.0.1:9998/v1/predictions/abc", LOCAL, False),            # another port is another origin
    ("https://api.replicate.com:bad/x", REPLICATE, False),
])
def test_replicate_urls_are_followed_only_on_its_own_hosts(url: str, base: str, followed: bool) -> None:
    assert _may_follow(url, base) is followed


def test_an_unfollowed_replicate_url_falls_back_to_our_own() -> None:
    credential = validate_credential("replicate", ReplicateTranslator.credential_fields, {"api_token": "r8_fake"})
    ctx = CallContext(Any, credential, "meta/llama", REPLICATE, "req_1")  # type: ignore[arg-type]
    prediction = {"id": "abc", "urls": {"get": "https://evil.example/p", "cancel": "https://evil.example/c",
                                        "stream": "https://evil.example/s"}}
    translator = ReplicateTranslator()
    assert translator._url(ctx, prediction, "get") == f"{REPLICATE}/predictions/abc"
    assert translator._url(ctx, prediction, "cancel") == f"{REPLICATE}/predictions/abc/cancel"
    assert translator._url(ctx, prediction, "stream") is None  # then the output is polled


AZURE = REGISTRY["azure_openai"]
assert isinstance(AZURE, CompatibleTranslator)


def azure(**fields: str) -> Any:
    values = {"endpoint": "https://contoso.openai.azure.com", "api_key": "fake-azure-key-000000000000", **fields}
    return validate_credential(AZURE.name, AZURE.credential_fields, values)


@pytest.mark.parametrize("base_url", ["http://apim.contoso.example", "http://10.0.0.5:8080", "ws://apim.contoso.example"])
def test_azure_holds_a_base_url_override_to_the_https_rule(base_url: str) -> None:
    credential = azure(base_url=base_url)
    with pytest.raises(ApiError) as caught:
        AZURE.check_credential(credential)
    assert (caught.value.status, caught.value.code) == (400, "invalid_credential")
    assert "base_url" in caught.value.message and base_url not in caught.value.message
    ctx = CallContext(Any, credential, "prod", base_url, "req_1")  # type: ignore[arg-type]
    with pytest.raises(ApiError) as caught:
        AZURE.url(ctx, CHAT)
    assert caught.value.code == "invalid_credential"


@pytest.mark.parametrize("base_url", ["https://apim.contoso.example/azure", "http://localhost:1234",
                                      "http://127.0.0.1:9"])
def test_azure_takes_an_https_or_loopback_base_url(base_url: str) -> None:
    AZURE.check_credential(azure(base_url=base_url))
    ctx = CallContext(Any, azure(base_url=base_url), "prod", base_url, "req_1")  # type: ignore[arg-type]
    assert AZURE.url(ctx, CHAT).startswith(base_url + "/openai/deployments/prod/")


def test_spark_scrubs_every_part_of_its_signed_url() -> None:
    url = signed_url("wss://spark-api.xf-yun.com", "/v3.5/chat", "fake-key-0001", "fake-secret-0001",
                     "Mon, 01 Jan 2024 00:00:00 GMT")
    parts = signed_parts(url)
    signature = parts[-1]
    assert len(parts) == 6 and len(signature) > 20
    for leaked in (f"failed for {url}", f"bad signature {signature}", f"authorization {parts[2]}"):
        with pytest.raises(UpstreamError) as caught, scrubbing(*parts):
            raise UpstreamError(401, leaked)
        assert signature not in caught.value.message and parts[2] not in caught.value.message


def test_zhipu_scrubs_its_jwt_and_signature() -> None:
    credential = validate_credential(ZHIPU.name, ZHIPU.credential_fields, {"api_key": "fakeid.fakesecret0001"})
    ctx = CallContext(Any, credential, "glm-4", "https://open.bigmodel.cn/api/paas/v4", "r")  # type: ignore[arg-type]
    token, signature = derived_secrets(ctx)
    assert ZHIPU.headers(ctx)["Authorization"] == f"Bearer {token}" and token.endswith(signature)
    with pytest.raises(UpstreamError) as caught, scrubbing(token, signature):
        raise UpstreamError(401, f"signature {signature} does not match")
    assert signature not in caught.value.message
    assert ZHIPU.call_error is not None  # what every error of a Zhipu call goes through
    assert signature not in ZHIPU.call_error(UpstreamError(401, f"signature {signature} does not match"), ctx).message
