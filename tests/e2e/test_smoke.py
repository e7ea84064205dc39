from tests.e2e.harness import GatewayProcess


def test_chat_default_model(gw: GatewayProcess) -> None:
    reply = gw.client().chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from the fake!"
    assert reply.model == "gpt-4o-mini"
