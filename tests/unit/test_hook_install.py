"""Installing and removing the hook, and its pure request rules (no network here)."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest

from agentledger import collectors as al
from agentledger.collectors import hook

Completions = openai.resources.chat.completions.Completions


def test_instrument_is_idempotent_and_uninstrument_restores() -> None:
    original = Completions.__dict__["create"]
    try:
        first = al.instrument(enforce=False)
        wrapped = Completions.__dict__["create"]
        assert al.instrument(enforce=False) == first and Completions.__dict__["create"] is wrapped
        assert wrapped.__wrapped__ is original  # signature and docs still the SDK's
    finally:
        al.uninstrument()
    assert Completions.__dict__["create"] is original and hook.installed() is None


def test_uninstrument_leaves_a_later_wrapper_in_place(caplog: pytest.LogCaptureFixture) -> None:
    original = Completions.__dict__["create"]
    al.instrument(enforce=False)
    ours = Completions.__dict__["create"]

    def theirs(self: Any, *args: Any, **kwargs: Any) -> Any:  # e.g. another instrumentation
        return ours(self, *args, **kwargs)

    Completions.create = theirs  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING, logger="agentledger.collectors"):
            al.uninstrument()
        assert Completions.__dict__["create"] is theirs
        assert "wrapped again after instrument()" in caplog.text
    finally:
        Completions.create = original  # type: ignore[method-assign]


def test_settings_are_checked_at_instrument_time() -> None:
    with pytest.raises(ValueError, match="throttle must be"):
        al.instrument(enforce=False, throttle="queue")
    with pytest.raises(ValueError, match="api must be"):
        al.Fallback(base_url="http://x/v1", api="gemini")
    assert "sk-secret" not in repr(al.Fallback(base_url="http://x/v1", api_key="sk-secret"))


def _hook(stream_usage: bool = True) -> hook.Hook:
    return hook.Hook(None, None, "wait", {}, {}, stream_usage, {})


CHAT = hook.TARGETS[0]


@pytest.mark.parametrize(
    ("kwargs", "asked", "options"),
    [
        ({"stream": True}, True, {"include_usage": True}),
        ({"stream": True, "stream_options": {"include_obfuscation": False}}, True,
         {"include_obfuscation": False, "include_usage": True}),
        ({"stream": True, "stream_options": {"include_usage": True}}, False, {"include_usage": True}),
        ({"stream": False}, False, None),
    ],
)  # fmt: skip
def test_chat_streams_are_asked_for_usage_keeping_the_agents_options(
    kwargs: dict[str, Any], asked: bool, options: dict[str, Any] | None
) -> None:
    assert hook._want_stream_usage(_hook(), CHAT, kwargs) is asked
    assert kwargs.get("stream_options") == options


def test_stream_usage_off_leaves_the_request_alone() -> None:
    kwargs: dict[str, Any] = {"stream": True}
    assert hook._want_stream_usage(_hook(stream_usage=False), CHAT, kwargs) is False
    assert kwargs == {"stream": True}
