"""The hook remembers which provider a client's base URL names; the memory follows the client
and the settings (a new base_url, a new instrument() with other providers). No network."""

from __future__ import annotations

import anthropic
import openai

from agentledger import collectors as al
from agentledger.collectors import hook


def _chat_target() -> hook._Target:
    return next(t for t in hook.TARGETS if t.operation == "chat" and not t.is_async)


def test_provider_follows_a_new_base_url_on_the_same_client() -> None:
    client = openai.OpenAI(base_url="https://api.groq.com/openai/v1", api_key="sk-test")
    h = hook.Hook(None, None, "wait", {}, {}, True, {})
    target = _chat_target()
    assert h.provider_of(client.chat.completions, target) == "groq"
    assert h.provider_of(client.chat.completions, target) == "groq"  # remembered, same answer
    client.base_url = "https://api.deepseek.com/v1"  # type: ignore[assignment]
    assert h.provider_of(client.chat.completions, target) == "deepseek"
    client.base_url = "http://127.0.0.1:9/v1"  # type: ignore[assignment]
    assert h.provider_of(client.chat.completions, target) == "openai"


def test_reinstrument_with_other_providers_is_not_answered_from_memory() -> None:
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test")
    target = _chat_target()
    try:
        al.instrument(enforce=False)
        assert hook.installed().provider_of(client.chat.completions, target) == "openai"  # type: ignore[union-attr]
        al.instrument(enforce=False, providers={"127.0.0.1": "vllm"})
        assert hook.installed().provider_of(client.chat.completions, target) == "vllm"  # type: ignore[union-attr]
    finally:
        al.uninstrument()


def test_same_url_other_sdk_or_client_class_keeps_its_own_answer() -> None:
    h = hook.Hook(None, None, "wait", {}, {}, True, {})
    url = "http://127.0.0.1:9"
    oa = openai.OpenAI(base_url=url, api_key="sk-test")
    az = openai.AzureOpenAI(azure_endpoint=url, api_version="2024-10-21", api_key="sk-test")
    an = anthropic.Anthropic(base_url=url, api_key="sk-test")
    messages = next(t for t in hook.TARGETS if t.sdk == "anthropic" and not t.is_async)
    assert h.provider_of(oa.chat.completions, _chat_target()) == "openai"
    assert h.provider_of(az.chat.completions, _chat_target()) == "azure"
    assert h.provider_of(an.messages, messages) == "anthropic"


def test_memory_is_bounded() -> None:
    h = hook.Hook(None, None, "wait", {}, {}, True, {})
    target = _chat_target()
    clients = [openai.OpenAI(base_url=f"http://10.0.0.{n % 250}:{n}/v1", api_key="k") for n in range(300)]
    for client in clients:
        assert h.provider_of(client.chat.completions, target) == "openai"
    assert len(h._provider_seen) <= hook._PROVIDER_SEEN_MAX
