"""`proxy.validation.validate_live` against the fake vendors (real `UpstreamClient`, loopback):
a good credential passes with the cheapest call, and every way it can fail (the vendor
refuses the key, nobody listens, the destination policy refuses, the vendor stalls) is
one 400 `credential_validation_failed` carrying the reason and never the secret."""

from __future__ import annotations

import io
import socket
import time
import wave
from collections.abc import AsyncIterator, Iterator

import pytest

from keystore.models import Credential, validate_credential
from proxy.validation import CODE, validate_live
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.azure_fixtures import FakeAzure
from tests.fakes.fixtures import FakeOpenAI
from tests.fakes.huggingface_fixtures import FakeHF
from tests.fakes.qwen_fixtures import FakeQwen
from translators import REGISTRY
from translators._http import Timeouts, UpstreamClient
from translators.base import Translator
from translators.errors import ApiError, UpstreamError, upstream_status_error
from translators.types import ModelType

OPENAI, ANTHROPIC, QWEN = REGISTRY["openai"], REGISTRY["anthropic"], REGISTRY["qwen"]
HF, AZURE = REGISTRY["huggingface"], REGISTRY["azure_openai"]
WRONG_KEY = "sk-wrong-0123456789abcdefXYZW"


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    # The default destination policy allows loopback (the fakes) and refuses link-local.
    client = UpstreamClient(Timeouts(connect=2.0, read=5.0, total=5.0))
    yield client
    await client.close()


def cred(translator: Translator, **values: str) -> Credential:
    """As the console would hand it over: checked against the provider's fields first."""
    return validate_credential(translator.name, translator.credential_fields, values)


async def refused(translator: Translator, credential: Credential, http: UpstreamClient, **kw: object) -> ApiError:
    with pytest.raises(ApiError) as info:
        await validate_live(translator, credential, http, **kw)  # type: ignore[arg-type]
    err = info.value
    assert (err.status, err.type, err.code) == (400, "invalid_request_error", CODE), err
    assert err.message.startswith("Validation failed: ")
    for secret in credential.secret_values():
        assert secret not in err.message
    return err


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on leaving: nothing listens there


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


# -- a good credential ------------------------------------------------------------------------------


async def test_openai_right_key_is_valid_with_a_one_token_chat(http: UpstreamClient, fake_openai: FakeOpenAI) -> None:
    result = await validate_live(OPENAI, cred(OPENAI, api_key=fake_openai.api_key, base_url=fake_openai.v1_url), http)
    assert result == {"valid": True, "model": OPENAI.catalog[ModelType.LLM][0], "type": "llm"}
    [call] = fake_openai.state.requests_to("/v1/chat/completions")
    assert call.json["max_tokens"] == 1 and call.json["messages"] == [{"role": "user", "content": "ping"}]
    assert "stream" not in call.json or call.json["stream"] is False


async def test_own_model_provider_takes_the_asked_type(http: UpstreamClient, fake_openai: FakeOpenAI) -> None:
    credential = cred(OPENAI, api_key=fake_openai.api_key, base_url=fake_openai.v1_url)
    result = await validate_live(OPENAI, credential, http, model_type=ModelType.TEXT_EMBEDDING)
    assert result == {"valid": True, "model": "text-embedding-3-small", "type": "text-embedding"}
    assert fake_openai.state.requests_to("/v1/embeddings")[0].json["input"] == "ping"
    result = await validate_live(OPENAI, credential, http, model_type=ModelType.SPEECH2TEXT)
    assert result == {"valid": True, "model": "whisper-1", "type": "speech2text"}
    [upload] = fake_openai.state.requests_to("/v1/audio/transcriptions")[0].files.values()
    with wave.open(io.BytesIO(upload.data)) as audio:  # a real WAV, about 0.1 s long
        assert audio.getnchannels() == 1 and 0.05 <= audio.getnframes() / audio.getframerate() <= 0.2


async def test_per_model_embedding_model_is_valid(http: UpstreamClient, fake_hf: FakeHF) -> None:
    model = "sentence-transformers/all-MiniLM-L6-v2"
    result = await validate_live(HF, cred(HF, api_token=fake_hf.token, base_url=fake_hf.base_url), http,
                                 model_type=ModelType.TEXT_EMBEDDING, model=model)
    assert result == {"valid": True, "model": model, "type": "text-embedding"}
    assert [r.path for r in fake_hf.state.requests] == [f"/models/{model}/pipeline/feature-extraction"]


async def test_azure_deployment_is_valid(http: UpstreamClient, fake_azure: FakeAzure) -> None:
    credential = cred(AZURE, endpoint=fake_azure.endpoint, api_key=fake_azure.api_key)
    result = await validate_live(AZURE, credential, http, model_type=ModelType.LLM, model="prod-chat")
    assert result == {"valid": True, "model": "prod-chat", "type": "llm"}
    assert fake_azure.state.requests[-1].path == "/openai/deployments/prod-chat/chat/completions"


# -- the vendor says no -----------------------------------------------------------------------------


async def test_openai_wrong_key_gives_the_vendors_message(http: UpstreamClient, fake_openai: FakeOpenAI) -> None:
    err = await refused(OPENAI, cred(OPENAI, api_key=WRONG_KEY, base_url=fake_openai.v1_url), http)
    assert "Incorrect API key provided" in err.message and "rejected" in err.message
    assert err.param == "credentials" and WRONG_KEY not in err.message


async def test_a_key_the_vendor_echoes_is_scrubbed(http: UpstreamClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.api_keys.add(WRONG_KEY)  # past the fake's own check, to its scripted 401
    fake_openai.state.fail_next.append((401, {"error": {"message": f"key {WRONG_KEY} is revoked", "type": None,
                                                        "param": None, "code": "invalid_api_key"}}))
    err = await refused(OPENAI, cred(OPENAI, api_key=WRONG_KEY, base_url=fake_openai.v1_url), http)
    assert "key *** is revoked" in err.message


async def test_anthropic_wrong_key_gives_the_vendors_message(http: UpstreamClient,
                                                             fake_anthropic: FakeAnthropic) -> None:
    credential = cred(ANTHROPIC, api_key="sk-ant-wrong-0123456789", base_url=fake_anthropic.base_url)
    err = await refused(ANTHROPIC, credential, http)
    assert "invalid x-api-key" in err.message


async def test_qwen_wrong_key_gives_the_vendors_message(http: UpstreamClient, fake_qwen: FakeQwen) -> None:
    err = await refused(QWEN, cred(QWEN, api_key=WRONG_KEY, base_url=fake_qwen.base_url), http)
    assert "Invalid API-key provided." in err.message


async def test_unknown_deployment_names_the_model(http: UpstreamClient, fake_azure: FakeAzure) -> None:
    credential = cred(AZURE, endpoint=fake_azure.endpoint, api_key=fake_azure.api_key)
    err = await refused(AZURE, credential, http, model_type=ModelType.LLM, model="no-such-deployment")
    assert "no-such-deployment" in err.message


async def test_per_model_provider_needs_the_model(http: UpstreamClient, fake_hf: FakeHF) -> None:
    err = await refused(HF, cred(HF, api_token=fake_hf.token, base_url=fake_hf.base_url), http)
    assert err.param == "model" and not fake_hf.state.requests


# -- nobody there, not allowed there, too slow ---------------------------------------------------------


async def test_unreachable_base_url_is_a_400(http: UpstreamClient, closed_port: int) -> None:
    credential = cred(OPENAI, api_key=WRONG_KEY, base_url=f"http://127.0.0.1:{closed_port}/v1")
    err = await refused(OPENAI, credential, http)
    assert "could not connect" in err.message and err.param == "base_url"


async def test_refused_destination_is_a_400(http: UpstreamClient) -> None:
    credential = cred(OPENAI, api_key=WRONG_KEY, base_url="http://169.254.169.254/v1")
    err = await refused(OPENAI, credential, http)
    assert "not an allowed destination" in err.message and err.param == "base_url"


async def test_a_vendor_that_stalls_is_a_400(http: UpstreamClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.delay = 3.0
    started = time.monotonic()
    err = await refused(OPENAI, cred(OPENAI, api_key=fake_openai.api_key, base_url=fake_openai.v1_url), http,
                        timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert "did not answer within 0.3 s" in err.message


async def test_a_server_that_never_answers_is_a_400(http: UpstreamClient, silent_port: int) -> None:
    credential = cred(OPENAI, api_key=WRONG_KEY, base_url=f"http://127.0.0.1:{silent_port}/v1")
    err = await refused(OPENAI, credential, http, timeout=0.3)
    assert err.message == "Validation failed: the vendor did not answer within 0.3 s"


def test_the_vendors_own_words_are_scrubbed_with_the_message() -> None:
    """`_reason` rewords a rejected credential from the vendor's own words, kept apart from
    the gateway's message: a secret scrubbed from one is scrubbed from the other."""
    err = upstream_status_error("openai", 401, "Incorrect API key provided: sk-fake-echoed-0001")
    assert isinstance(err, UpstreamError) and err.vendor_message == "Incorrect API key provided: sk-fake-echoed-0001"
    clean = err.scrubbed(("sk-fake-echoed-0001",))
    assert isinstance(clean, UpstreamError) and "sk-fake" not in clean.message
    assert clean.vendor_message == "Incorrect API key provided: ***"
    assert err.vendor_message.endswith("0001")  # the original is left as it was
