"""Reading streams without a server: the SSE parser, both accumulators, packing (docs/streaming.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchrunner.providers.anthropic_stream import MessageStream
from batchrunner.providers.openai_stream import ChatStream
from batchrunner.providers.sse import SseEvent, SseParser
from batchrunner.providers.streaming import ErrorEvent, pack_events, unpack_events


def parse(text: str) -> list[SseEvent]:
    parser = SseParser()
    return [event for line in text.split("\n") if (event := parser.feed(line)) is not None]


def test_sse_events_are_split_on_blank_lines_with_their_names() -> None:
    text = "event: a\ndata: 1\n\n: a comment\ndata:2\ndata: 3\nid: 9\nretry: 5\n\nevent: lonely\n\ndata: cut"
    assert parse(text) == [SseEvent("a", "1"), SseEvent(None, "2\n3")]  # no data, or no blank line: none


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> SseEvent:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}
    return SseEvent(None, json.dumps(body | extra))


def test_tool_call_chunks_add_up_as_the_openai_sdk_adds_them() -> None:
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}
    events = [
        chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}),
        chunk({}, "tool_calls"),
        SseEvent(
            None,
            json.dumps(
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
                }
            ),
        ),
        SseEvent(None, "[DONE]"),
    ]
    ours = ChatStream()
    carried = [ours.feed(event) for event in events]
    assert carried == [True, True, True, False, False, False] and ours.complete
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for event in events[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate_json(event.data))
    reference: dict[str, Any] = json.loads(state.get_final_completion().to_json())
    answer = ours.answer()
    message = answer["choices"][0]["message"]
    expected = reference["choices"][0]["message"]
    assert message["content"] == expected.get("content") is None
    assert [
        {
            "id": tool["id"],
            "type": tool["type"],
            "function": {k: tool["function"][k] for k in ("name", "arguments")},
        }
        for tool in expected["tool_calls"]
    ] == message["tool_calls"]
    assert answer["choices"][0]["finish_reason"] == reference["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"] == reference["usage"]


def test_a_chat_stream_is_complete_at_done_or_when_every_choice_finished() -> None:
    stream = ChatStream()
    stream.feed(chunk({"content": "a"}))
    assert not stream.complete
    stream.feed(chunk({}, "stop"))
    assert stream.complete
    with pytest.raises(ErrorEvent):
        ChatStream().feed(SseEvent(None, json.dumps({"error": {"message": "x"}})))
    with pytest.raises(ValueError):
        ChatStream().feed(SseEvent(None, "[1, 2]"))


def event(payload: dict[str, Any]) -> SseEvent:
    return SseEvent(payload["type"], json.dumps(payload))


def test_a_message_stream_adds_up_text_thinking_and_tool_input() -> None:
    usage = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 0}
    start = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "m",
        "usage": usage,
    }
    events = [
        event({"type": "message_start", "message": {**start, "stop_reason": None}}),
        event(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}
        ),
        event(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}
        ),
        event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "s"},
            }
        ),
        event({"type": "content_block_stop", "index": 0}),
        event({"type": "ping"}),
        event({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        event({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}}),
        event({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "lo"}}),
        event({"type": "content_block_stop", "index": 1}),
        event(
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "t", "name": "get", "input": {}},
            }
        ),
        event(
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": '},
            }
        ),
        event(
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "[1]}"},
            }
        ),
        event({"type": "content_block_stop", "index": 2}),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 9, "input_tokens": None},
            }
        ),
        event({"type": "message_stop"}),
    ]
    stream = MessageStream()
    carried = [stream.feed(item) for item in events]
    assert carried.index(True) == 2 and stream.complete
    # worked out by hand from the events above
    assert stream.answer() == {
        **start,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "t", "name": "get", "input": {"a": [1]}},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 9, "cache_read_input_tokens": 0},
    }


def test_a_message_stream_refuses_events_out_of_order() -> None:
    with pytest.raises(ValueError, match="before message_start"):
        MessageStream().feed(event({"type": "content_block_stop", "index": 0}))
    with pytest.raises(ErrorEvent) as caught:
        MessageStream().feed(event({"type": "error", "error": {"type": "api_error", "message": "x"}}))
    assert caught.value.payload["error"]["type"] == "api_error"


def test_events_are_packed_compactly_and_unpacked_as_they_came() -> None:
    events = [json.dumps({"id": "c", "choices": [{"delta": {"content": f"w{n}"}}]}) for n in range(200)]
    packed = pack_events(events)
    assert unpack_events(packed) == events and unpack_events(pack_events([])) == []
    assert len(packed) * 5 < len("\n".join(events))


def test_the_streamed_response_header_is_the_sdks() -> None:
    import anthropic._constants
    import openai._constants

    from batchrunner.providers import anthropic as anthropic_adapter
    from batchrunner.providers import openai as openai_adapter

    assert openai_adapter.STREAMED_RESPONSE == {openai._constants.RAW_RESPONSE_HEADER: "stream"}
    assert anthropic_adapter.STREAMED_RESPONSE == {anthropic._constants.RAW_RESPONSE_HEADER: "stream"}
