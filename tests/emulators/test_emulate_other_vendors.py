"""The Chinese vendors' emulators served the way `modelport emulate all` serves them (each
under `/NAME` behind `emulators.inject.Emulated`), driven by the vendors' own SDKs where
there is one (DashScope's for Qwen, OpenAI's for Zhipu and ChatGLM's openai_api.py) and by
httpx / websockets otherwise: a fixed reply, echo, an automatic tool call, a stream, and
every injected fault in the vendor's own words."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit

import dashscope
import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from emulators import chatglm, ernie, minimax, qwen, spark, zhipu
from emulators.serve import Served, describe
from emulators.server import ServedApp
from tests.emulators._common import WEATHER, WEATHER_ARGUMENTS, fault, reply, serving

NAMES = ["spark", "ernie", "qwen", "minimax", "chatglm", "zhipu"]
HTTP_FAULTS = ["401", "429", "500", "overloaded", "error-200"]
ASKED = "请把这句话原样说回来"
FIXED = "a fixed answer in five words"  # a header carries latin-1 only


@pytest.fixture(scope="module")
def emulated() -> Iterator[tuple[ServedApp, dict[str, Served]]]:
    with serving(NAMES) as pair:
        yield pair


@pytest.fixture(scope="module")
def base_urls(emulated: tuple[ServedApp, dict[str, Served]]) -> dict[str, str]:
    """Each emulator's SDK `base_url`, as `modelport emulate` prints it."""
    return {row["name"]: row["base_url"] for row in describe(emulated[0].base_url, NAMES, prefixed=True)}


@pytest.fixture(scope="module")
def root(emulated: tuple[ServedApp, dict[str, Served]]) -> str:
    return emulated[0].base_url


def assert_cut(url: str, **kwargs: Any) -> None:
    """`reset`: the answer starts (a 200 and some bytes), then the connection drops."""
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("POST", url, timeout=10, **kwargs) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
    assert received


def assert_slow(call: Callable[[], Any]) -> Any:
    """`slow-0.3`: answered, not before 0.3 s."""
    started = time.monotonic()
    answer = call()
    assert time.monotonic() - started >= 0.3
    return answer


def sse_data(text: str) -> list[Any]:
    """The JSON of each `data:` line of an event stream (the vendors' `[DONE]` left out)."""
    lines = [line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("data:")]
    return [json.loads(line) for line in lines if line and line != "[DONE]"]


# -- Qwen: the dashscope SDK ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashscope_at(base_urls: dict[str, str]) -> Iterator[None]:
    before = dashscope.base_http_api_url
    dashscope.base_http_api_url = base_urls["qwen"]
    try:
        yield
    finally:
        dashscope.base_http_api_url = before


def qwen_call(headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("model", "qwen-turbo")
    kwargs.setdefault("messages", [{"role": "user", "content": ASKED}])
    return dashscope.Generation.call(api_key=qwen.DEFAULT_API_KEY, result_format="message", headers=headers or {},
                                     **kwargs)


@pytest.mark.usefixtures("dashscope_at")
def test_qwen_fixed_echo_tool_and_stream() -> None:
    assert qwen_call().output.choices[0].message.content == qwen.DEFAULT_REPLY  # nothing asked: the fake's own
    assert qwen_call(reply(FIXED)).output.choices[0].message.content == FIXED
    assert qwen_call(reply("echo")).output.choices[0].message.content == ASKED
    called = qwen_call(tools=[WEATHER]).output.choices[0]
    assert called.finish_reason == "tool_calls"
    function = called.message.tool_calls[0]["function"]
    assert function["name"] == "get_weather" and json.loads(function["arguments"]) == WEATHER_ARGUMENTS
    parts = list(qwen_call(reply(FIXED), stream=True, incremental_output=True))
    assert "".join(p.output.choices[0].message.content for p in parts) == FIXED
    assert parts[-1].output.choices[0].finish_reason == "stop"


QWEN_FAULTS = {"401": (401, "InvalidApiKey"), "429": (429, "Throttling.RateQuota"), "500": (500, "InternalError"),
               "overloaded": (503, "ModelUnavailable"),
               "error-200": (500, "InternalError")}  # DashScope errs in a 200 only in a stream


@pytest.mark.usefixtures("dashscope_at")
@pytest.mark.parametrize("kind", HTTP_FAULTS)
@pytest.mark.parametrize("by", ["header", "model"])
def test_qwen_faults(kind: str, by: str) -> None:
    asked = {"headers": fault(kind)} if by == "header" else {"model": f"fault-{kind}"}
    answer = qwen_call(**asked)
    assert (answer.status_code, answer.code) == QWEN_FAULTS[kind] and answer.message and answer.request_id


@pytest.mark.usefixtures("dashscope_at")
def test_qwen_error_in_a_stream() -> None:
    parts = list(qwen_call(fault("error-200"), stream=True, incremental_output=True))
    assert parts[0].status_code == 200 and parts[0].output.choices[0].message.content
    # the error event (the SDK takes its status from a `status:` line, which DashScope leaves out)
    assert parts[-1].status_code != 200 and parts[-1].code == "InternalError" and parts[-1].message


@pytest.mark.usefixtures("dashscope_at")
def test_qwen_reset_and_slow(base_urls: dict[str, str]) -> None:
    url = base_urls["qwen"] + "/services/aigc/text-generation/generation"
    body = {"model": "fault-reset", "input": {"messages": [{"role": "user", "content": ASKED}]}}
    assert_cut(url, json=body, headers={"Authorization": f"Bearer {qwen.DEFAULT_API_KEY}", "X-DashScope-SSE": "enable"})
    answer = assert_slow(lambda: qwen_call(fault("slow-0.3")))
    assert answer.status_code == 200 and answer.output.choices[0].message.content == qwen.DEFAULT_REPLY


# -- Zhipu and ChatGLM: the openai SDK ------------------------------------------------------------


@pytest.fixture(scope="module")
def glm(base_urls: dict[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_urls["zhipu"], api_key=zhipu.DEFAULT_API_KEY, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def chatglm_client(base_urls: dict[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_urls["chatglm"], api_key="EMPTY", max_retries=0) as client:
        yield client


def chat(client: openai.OpenAI, model: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": ASKED}],
                                          extra_headers=headers, **kwargs)


def streamed_text(chunks: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_zhipu_fixed_echo_tool_and_stream(glm: openai.OpenAI) -> None:
    assert chat(glm, "glm-4-flash").choices[0].message.content == zhipu.DEFAULT_REPLY
    assert chat(glm, "glm-4-flash", reply(FIXED)).choices[0].message.content == FIXED
    assert chat(glm, "glm-4-flash", reply("echo")).choices[0].message.content == ASKED
    called = chat(glm, "glm-4-flash", tools=[WEATHER]).choices[0]
    assert called.finish_reason == "tool_calls"
    call = called.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGUMENTS
    assert streamed_text(chat(glm, "glm-4-flash", reply(FIXED), stream=True)) == FIXED


ZHIPU_FAULTS = {"401": (openai.AuthenticationError, "1002"), "429": (openai.RateLimitError, "1302"),
                "500": (openai.InternalServerError, "500"), "overloaded": (openai.InternalServerError, "1305")}


@pytest.mark.parametrize("kind", list(ZHIPU_FAULTS))
@pytest.mark.parametrize("by", ["header", "model"])
def test_zhipu_faults(glm: openai.OpenAI, kind: str, by: str) -> None:
    error, code = ZHIPU_FAULTS[kind]
    with pytest.raises(error) as raised:
        chat(glm, f"fault-{kind}" if by == "model" else "glm-4-flash", fault(kind) if by == "header" else None)
    assert raised.value.status_code == {"401": 401, "429": 429, "500": 500, "overloaded": 503}[kind]
    assert raised.value.response.json()["error"]["code"] == code


def test_zhipu_error_200(glm: openai.OpenAI) -> None:
    failed = chat(glm, "glm-4-flash", fault("error-200")).choices[0]
    assert failed.finish_reason == "network_error"  # Zhipu's failed inference, in a 200
    with pytest.raises(openai.APIError, match="服务内部错误"):  # the SDK stops on the `error` event
        list(chat(glm, "fault-error-200", stream=True))


def test_zhipu_reset_and_slow(glm: openai.OpenAI, base_urls: dict[str, str]) -> None:
    assert_cut(base_urls["zhipu"] + "/chat/completions", headers={"Authorization": zhipu.DEFAULT_API_KEY},
               json={"model": "fault-reset", "stream": True, "messages": [{"role": "user", "content": ASKED}]})
    answer = assert_slow(lambda: chat(glm, "fault-slow-0.3"))
    assert answer.choices[0].message.content == zhipu.DEFAULT_REPLY


def test_chatglm_fixed_echo_no_tools_and_stream(chatglm_client: openai.OpenAI) -> None:
    assert chat(chatglm_client, "chatglm3-6b").choices[0].message.content == chatglm.DEFAULT_REPLY
    assert chat(chatglm_client, "chatglm3-6b", reply(FIXED)).choices[0].message.content == FIXED
    assert chat(chatglm_client, "chatglm3-6b", reply("echo")).choices[0].message.content == ASKED
    # openai_api.py has no tools: it ignores them and answers in words
    offered = chat(chatglm_client, "chatglm3-6b", reply(FIXED), tools=[WEATHER]).choices[0]
    assert offered.message.content == FIXED and not offered.message.tool_calls
    chunks = list(chat(chatglm_client, "chatglm3-6b", reply(FIXED), stream=True))
    assert streamed_text(chunks) == FIXED and chunks[-1].choices[0].finish_reason == "stop"


CHATGLM_FAULTS: dict[str, tuple[type[openai.APIStatusError], int]] = {
    "401": (openai.AuthenticationError, 401), "429": (openai.RateLimitError, 429),
    "500": (openai.InternalServerError, 500), "overloaded": (openai.InternalServerError, 503),
    "error-200": (openai.InternalServerError, 500)}  # no error inside a 200 but in a stream


@pytest.mark.parametrize("kind", HTTP_FAULTS)
@pytest.mark.parametrize("by", ["header", "model"])
def test_chatglm_faults(chatglm_client: openai.OpenAI, kind: str, by: str) -> None:
    error, status = CHATGLM_FAULTS[kind]
    with pytest.raises(error) as raised:
        chat(chatglm_client, f"fault-{kind}" if by == "model" else "chatglm3-6b",
             fault(kind) if by == "header" else None)
    assert raised.value.status_code == status
    if status == 500:
        assert raised.value.response.text == "Internal Server Error"  # FastAPI's, in plain text
    else:
        assert "detail" in raised.value.response.json()
    if kind == "429":
        assert raised.value.response.headers["retry-after"] == "1"


def test_chatglm_429_retry_after_and_error_200_stream(chatglm_client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        chat(chatglm_client, "chatglm3-6b", fault("429-7"))
    assert raised.value.response.headers["retry-after"] == "7"
    # openai_api.py fails a stream by ending it: no finish chunk, no [DONE]
    chunks = list(chat(chatglm_client, "chatglm3-6b", fault("error-200"), stream=True))
    assert streamed_text(chunks) and all(c.choices[0].finish_reason is None for c in chunks)


def test_chatglm_reset_and_slow(chatglm_client: openai.OpenAI, base_urls: dict[str, str]) -> None:
    assert_cut(base_urls["chatglm"] + "/chat/completions",
               json={"model": "fault-reset", "stream": True, "messages": [{"role": "user", "content": ASKED}]})
    answer = assert_slow(lambda: chat(chatglm_client, "chatglm3-6b", fault("slow-0.3")))
    assert answer.choices[0].message.content == chatglm.DEFAULT_REPLY


# -- MiniMax: httpx -------------------------------------------------------------------------------


def minimax_post(base_urls: dict[str, str], headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    body = {"model": "abab6.5s-chat", "messages": [{"role": "user", "content": ASKED}], **body}
    return httpx.post(base_urls["minimax"] + "/text/chatcompletion_v2", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {minimax.DEFAULT_API_KEY}", **(headers or {})})


def minimax_message(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert answer.status_code == 200 and body["base_resp"]["status_code"] == 0
    return dict(body["choices"][0]["message"])


def test_minimax_fixed_echo_tool_and_stream(base_urls: dict[str, str]) -> None:
    assert minimax_message(minimax_post(base_urls))["content"] == minimax.DEFAULT_REPLY
    assert minimax_message(minimax_post(base_urls, reply(FIXED)))["content"] == FIXED
    assert minimax_message(minimax_post(base_urls, reply("echo")))["content"] == ASKED
    call = minimax_message(minimax_post(base_urls, tools=[WEATHER]))["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == WEATHER_ARGUMENTS
    events = sse_data(minimax_post(base_urls, reply(FIXED), stream=True).text)
    assert "".join(e["choices"][0]["delta"]["content"] for e in events[:-1]) == FIXED
    assert events[-1]["object"] == "chat.completion" and events[-1]["choices"][0]["message"]["content"] == FIXED


MINIMAX_CODES = {"401": 1004, "429": 1002, "500": 1013, "overloaded": 1000, "error-200": 1013}


@pytest.mark.parametrize("kind", HTTP_FAULTS)
@pytest.mark.parametrize("by", ["header", "model"])
@pytest.mark.parametrize("stream", [False, True])
def test_minimax_faults(base_urls: dict[str, str], kind: str, by: str, stream: bool) -> None:
    asked: dict[str, Any] = {"headers": fault(kind)} if by == "header" else {"model": f"fault-{kind}"}
    answer = minimax_post(base_urls, stream=stream, **asked)
    assert answer.status_code == 200  # MiniMax's errors all come in a 200
    if stream and kind == "error-200":  # the stream begins, then fails
        first, error = sse_data(answer.text)
        assert first["choices"][0]["delta"]["content"] and "base_resp" not in first
    else:  # refused before it starts: a JSON body, a stream's too
        error = answer.json()
        assert error["choices"] is None
    assert error["base_resp"]["status_code"] == MINIMAX_CODES[kind] and error["base_resp"]["status_msg"]


def test_minimax_reset_and_slow(base_urls: dict[str, str]) -> None:
    assert_cut(base_urls["minimax"] + "/text/chatcompletion_v2",
               headers={"Authorization": f"Bearer {minimax.DEFAULT_API_KEY}"},
               json={"model": "fault-reset", "stream": True, "messages": [{"role": "user", "content": ASKED}]})
    answer = assert_slow(lambda: minimax_post(base_urls, model="fault-slow-0.3"))
    assert minimax_message(answer)["content"] == minimax.DEFAULT_REPLY


# -- ERNIE: httpx ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ernie_chat_url(root: str) -> str:
    token = httpx.post(f"{root}/ernie/oauth/2.0/token", params={
        "grant_type": "client_credentials", "client_id": ernie.API_KEY, "client_secret": ernie.SECRET_KEY}).json()
    return f"{root}/ernie{ernie.WORKSHOP}/chat/completions_pro?access_token={token['access_token']}"


def ernie_post(url: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.post(url, json={"messages": [{"role": "user", "content": ASKED}], **body}, headers=headers,
                      timeout=10)


def test_ernie_fixed_echo_function_and_stream(ernie_chat_url: str) -> None:
    assert ernie_post(ernie_chat_url).json()["result"] == ernie.DEFAULT_REPLY
    assert ernie_post(ernie_chat_url, reply(FIXED)).json()["result"] == FIXED
    assert ernie_post(ernie_chat_url, reply("echo")).json()["result"] == ASKED
    called = ernie_post(ernie_chat_url, functions=[WEATHER["function"]]).json()
    assert called["finish_reason"] == "function_call" and called["function_call"]["name"] == "get_weather"
    assert json.loads(called["function_call"]["arguments"]) == WEATHER_ARGUMENTS
    events = sse_data(ernie_post(ernie_chat_url, reply(FIXED), stream=True).text)
    assert "".join(e["result"] for e in events) == FIXED and events[-1]["is_end"] is True


ERNIE_CODES = {"401": 110, "429": 18, "500": 336000, "overloaded": 336100, "error-200": 336000}


@pytest.mark.parametrize("kind", HTTP_FAULTS)
@pytest.mark.parametrize("stream", [False, True])
def test_ernie_faults(ernie_chat_url: str, kind: str, stream: bool) -> None:
    answer = ernie_post(ernie_chat_url, fault(kind), stream=stream)
    assert answer.status_code == 200  # ERNIE's errors all come in a 200
    if stream and kind == "error-200":  # the stream begins, then fails
        first, error = sse_data(answer.text)
        assert first["result"] and first["is_end"] is False
    else:  # a bare JSON body, a stream's too
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()
    assert error["error_code"] == ERNIE_CODES[kind] and error["error_msg"]


def test_ernie_token_endpoint_401(root: str) -> None:
    refused = httpx.post(f"{root}/ernie/oauth/2.0/token", headers=fault("401"), params={
        "grant_type": "client_credentials", "client_id": ernie.API_KEY, "client_secret": ernie.SECRET_KEY})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_ernie_reset_and_slow(ernie_chat_url: str) -> None:
    assert_cut(ernie_chat_url, headers=fault("reset"),
               json={"stream": True, "messages": [{"role": "user", "content": ASKED}]})
    answer = assert_slow(lambda: ernie_post(ernie_chat_url, fault("slow-0.3")))
    assert answer.json()["result"] == ernie.DEFAULT_REPLY


# -- Spark's HTTP API: httpx ----------------------------------------------------------------------


def spark_post(root: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    body = {"model": "generalv3.5", "messages": [{"role": "user", "content": ASKED}], **body}
    return httpx.post(f"{root}/spark/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {spark.API_PASSWORD}", **(headers or {})})


def test_spark_http_fixed_echo_and_stream(root: str) -> None:
    assert spark_post(root).json()["choices"][0]["message"]["content"] == spark.DEFAULT_REPLY
    assert spark_post(root, reply(FIXED)).json()["choices"][0]["message"]["content"] == FIXED
    assert spark_post(root, reply("echo")).json()["choices"][0]["message"]["content"] == ASKED
    chunks = sse_data(spark_post(root, reply(FIXED), stream=True).text)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == FIXED and chunks[-1]["usage"]


SPARK_CODES = {"429": 11202, "500": 10012, "overloaded": 10110, "error-200": 10012}


@pytest.mark.parametrize("kind", HTTP_FAULTS)
@pytest.mark.parametrize("by", ["header", "model"])
def test_spark_http_faults(root: str, kind: str, by: str) -> None:
    asked: dict[str, Any] = {"headers": fault(kind)} if by == "header" else {"model": f"fault-{kind}"}
    answer = spark_post(root, **asked)
    if kind == "401":
        assert answer.status_code == 401 and answer.json()["error"]["message"] == "invalid user"
        return
    body = answer.json()  # Spark's other errors: `code != 0` in a 200
    assert answer.status_code == 200 and body["code"] == SPARK_CODES[kind] and body["message"] and body["sid"]


def test_spark_http_error_in_a_stream_reset_and_slow(root: str) -> None:
    first, error = sse_data(spark_post(root, fault("error-200"), stream=True).text)
    assert first["code"] == 0 and first["choices"][0]["delta"]["content"] and error["code"] == 10012
    assert_cut(f"{root}/spark/v1/chat/completions", headers={"Authorization": f"Bearer {spark.API_PASSWORD}"},
               json={"model": "fault-reset", "stream": True, "messages": [{"role": "user", "content": ASKED}]})
    answer = assert_slow(lambda: spark_post(root, model="fault-slow-0.3"))
    assert answer.json()["choices"][0]["message"]["content"] == spark.DEFAULT_REPLY


# -- Spark's websocket API: websockets --------------------------------------------------------------


def spark_url(root: str, path: str = "/v3.5/chat") -> str:
    """The signed URL (spark.md §A2) for the emulator under `/spark`: the request line signed
    is the whole path."""
    host = urlsplit(root).netloc
    date = formatdate(usegmt=True)
    signature = spark.sign(spark.API_SECRET, host, date, "/spark" + path)
    authorization = (f'api_key="{spark.API_KEY}", algorithm="hmac-sha256", headers="host date request-line", '
                     f'signature="{signature}"')
    query = urlencode({"authorization": base64.b64encode(authorization.encode()).decode(), "date": date,
                       "host": host})
    return f"{root.replace('http://', 'ws://', 1)}/spark{path}?{query}"


def spark_frame(functions: list[dict[str, Any]] | None = None) -> str:
    payload: dict[str, Any] = {"message": {"text": [{"role": "user", "content": ASKED}]}}
    if functions:
        payload["functions"] = {"text": functions}
    return json.dumps({"header": {"app_id": spark.APP_ID, "uid": "u-1"},
                       "parameter": {"chat": {"domain": "generalv3.5"}}, "payload": payload})


def spark_socket(root: str, headers: dict[str, str] | None = None) -> ClientConnection:
    return connect(spark_url(root), additional_headers=headers, proxy=None, open_timeout=5)


def spark_frames(root: str, headers: dict[str, str] | None = None,
                 functions: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame of one exchange, and how the socket closed."""
    frames = []
    with spark_socket(root, headers) as socket:
        socket.send(spark_frame(functions))
        with contextlib.suppress(ConnectionClosedError):  # closed with an error code
            for text in socket:
                frames.append(json.loads(text))
    return frames, socket.close_code


def spark_text(frames: list[dict[str, Any]]) -> str:
    return "".join(t["content"] for f in frames for t in f["payload"]["choices"]["text"])


def test_spark_socket_fixed_echo_function_and_frames(root: str) -> None:
    frames, closed = spark_frames(root)
    assert spark_text(frames) == spark.DEFAULT_REPLY and closed == 1000
    assert [f["header"]["status"] for f in frames][-1] == 2 and len(frames) > 2  # an answer in pieces
    assert spark_text(spark_frames(root, reply(FIXED))[0]) == FIXED
    assert spark_text(spark_frames(root, reply("echo"))[0]) == ASKED  # echo worked out from the frame
    [called], _ = spark_frames(root, functions=[WEATHER["function"]])
    call = called["payload"]["choices"]["text"][0]["function_call"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == WEATHER_ARGUMENTS


def test_spark_socket_401_refuses_the_handshake(root: str) -> None:
    with pytest.raises(InvalidStatus) as raised:
        spark_socket(root, fault("401"))
    assert raised.value.response.status_code == 401
    assert json.loads(raised.value.response.body or b"{}") == {"message": "Unauthorized"}


@pytest.mark.parametrize("kind", ["429", "500", "overloaded", "error-200"])
def test_spark_socket_error_frames(root: str, kind: str) -> None:
    frames, closed = spark_frames(root, fault(kind))
    *answered, error = frames
    assert error["header"]["code"] == SPARK_CODES[kind] and error["header"]["status"] == 2 and closed == 1000
    assert len(answered) == (1 if kind == "error-200" else 0)  # error-200: the answer fails midway
    assert all(f["header"]["code"] == 0 for f in answered)


def test_spark_socket_reset_and_slow(root: str) -> None:
    frames, closed = spark_frames(root, fault("reset"))
    assert len(frames) == 1 and frames[0]["header"]["status"] != 2 and closed == 1011  # cut before the end
    frames, closed = assert_slow(lambda: spark_frames(root, fault("slow-0.3")))
    assert spark_text(frames) == spark.DEFAULT_REPLY and closed == 1000
