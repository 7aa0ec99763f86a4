"""OpenAI wire format: chat completions (JSON and SSE chunks), embeddings, responses (JSON and SSE events).

Bodies are built as plain dicts in the exact shape of the real API, so ``openai.AsyncOpenAI`` parses them into
its typed objects (``ChatCompletion``, ``ChatCompletionChunk``, ``CreateEmbeddingResponse``, ``Response``).
"""

from __future__ import annotations

import json
from typing import Any

from batchrunner.fakeserver.answers import Answer, embedding, embedding_base64
from batchrunner.fakeserver.limits import LimitSnapshot
from batchrunner.fakeserver.prompts import Call

FINGERPRINT = "fp_fakeserver"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def chat_usage(call: Call, answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": call.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(call: Call, answer: Answer, *, ident: str, created: int, usage: bool) -> bytes:
    body: dict[str, Any] = {
        "id": f"chatcmpl-{ident}",
        "object": "chat.completion",
        "created": created,
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "length" if answer.truncated else "stop",
            }
        ],
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if usage:
        body["usage"] = chat_usage(call, answer)
    return _dumps(body)


def chat_chunks(call: Call, answer: Answer, *, ident: str, created: int, usage: bool) -> list[bytes]:
    """The SSE events of a streamed chat completion, ``data: [DONE]`` last.

    As the real API: every chunk carries ``"usage": null`` when ``include_usage`` was asked, and one more
    chunk with empty ``choices`` carries the usage before ``[DONE]``.
    """
    head = {
        "id": f"chatcmpl-{ident}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": call.model,
    }
    head |= {"service_tier": "default", "system_fingerprint": FINGERPRINT}
    with_usage = call.include_usage

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        body = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if with_usage:
            body["usage"] = None
        return b"data: " + _dumps(body) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events += [chunk({"content": piece}, None) for piece in _pieces(answer)]
    events.append(chunk({}, "length" if answer.truncated else "stop"))
    if with_usage and usage:
        events.append(
            b"data: " + _dumps({**head, "choices": [], "usage": chat_usage(call, answer)}) + b"\n\n"
        )
    events.append(b"data: [DONE]\n\n")
    return events


def _pieces(answer: Answer) -> list[str]:
    """The answer split into deltas whose concatenation is the text: one word (with its space) each."""
    return [word if index == 0 else " " + word for index, word in enumerate(answer.words)]


def embeddings(call: Call, *, dimensions: int) -> bytes:
    as_base64 = call.body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(call.inputs):
        vector = embedding(text, dimensions)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_base64(vector) if as_base64 else vector,
            }
        )
    usage = {"prompt_tokens": call.input_tokens, "total_tokens": call.input_tokens}
    return _dumps({"object": "list", "data": data, "model": call.model, "usage": usage})


def response_object(
    call: Call, answer: Answer, *, ident: str, created: int, usage: bool, done: bool = True
) -> dict[str, Any]:
    """A Responses API ``response``; ``done=False`` gives the in-progress one that a stream starts with."""
    status = ("incomplete" if answer.truncated else "completed") if done else "in_progress"
    return {
        "id": f"resp_{ident}",
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if done and answer.truncated else None,
        "instructions": call.body.get("instructions"),
        "max_output_tokens": call.body.get("max_output_tokens"),
        "model": call.model,
        "output": [response_message(ident=ident, text=answer.text, status=status)] if done else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "user": None,
        "metadata": {},
        "usage": _response_usage(call, answer) if done and usage else None,
    }


def _response_usage(call: Call, answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": call.input_tokens,
        "input_tokens_details": {"cached_tokens": answer.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": answer.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": call.input_tokens + answer.output_tokens,
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_message(*, ident: str, text: str | None, status: str) -> dict[str, Any]:
    """An output message item; ``text=None`` gives the empty one a stream announces first."""
    content = [] if text is None else [_output_text(text)]
    return {
        "type": "message",
        "id": f"msg_{ident}",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def response(call: Call, answer: Answer, *, ident: str, created: int, usage: bool) -> bytes:
    return _dumps(response_object(call, answer, ident=ident, created=created, usage=usage))


def response_events(call: Call, answer: Answer, *, ident: str, created: int, usage: bool) -> list[bytes]:
    """The SSE events of a streamed response, ``response.created`` to ``response.completed``."""
    at = {"item_id": f"msg_{ident}", "output_index": 0, "content_index": 0}
    start = response_object(call, answer, ident=ident, created=created, usage=usage, done=False)
    final = response_object(call, answer, ident=ident, created=created, usage=usage)
    empty_item = response_message(ident=ident, text=None, status="in_progress")
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
        {"type": "response.output_item.added", "output_index": 0, "item": empty_item},
        {"type": "response.content_part.added", **at, "part": _output_text("")},
        *(
            {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
            for piece in _pieces(answer)
        ),
        {"type": "response.output_text.done", **at, "text": answer.text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": _output_text(answer.text)},
        {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
        {"type": "response.incomplete" if answer.truncated else "response.completed", "response": final},
    ]
    events = []
    for number, payload in enumerate(payloads):
        payload["sequence_number"] = number
        events.append(b"event: " + payload["type"].encode() + b"\ndata: " + _dumps(payload) + b"\n\n")
    return events


def ratelimit_headers(requests: LimitSnapshot | None, tokens: LimitSnapshot | None) -> dict[str, str]:
    """``x-ratelimit-*`` headers; resets are Go-style durations, as OpenAI sends them (``"20ms"``)."""
    headers: dict[str, str] = {}
    for name, snapshot in (("requests", requests), ("tokens", tokens)):
        if snapshot is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(snapshot.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(snapshot.remaining)
            headers[f"x-ratelimit-reset-{name}"] = duration(snapshot.reset_s)
    return headers


def duration(seconds: float) -> str:
    """``0.25 -> "250ms"``, ``1.5 -> "1.5s"``, ``75 -> "1m15s"``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text
