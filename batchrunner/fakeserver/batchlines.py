"""One request of a provider batch, answered exactly as the realtime route answers the same body.

A line goes through what a realtime request goes through, less the transport: :func:`~.prompts.parse_call`
(a body the API would refuse is a 400 line), the fault plan of its prompt key (a schedule entry or a
``[[fault:...]]`` directive; an HTTP-error fault makes the line fail with that error's body, ``no-usage``
leaves the usage out, the faults that break a connection do not apply to a batch line), then
:func:`~.render.render`, so text and usage are those of the realtime answer. The attempt number is how many
batches that will run have held the prompt key (1 the first time): the plan's first fault meets the first
batch, as it would meet the first realtime request. Streaming is switched off (a batch answers whole).

Random faults (``--p500`` ...) and the limiter do not apply to batch lines. The shapes of the result lines
(OpenAI output and error files, Anthropic results) are docs/batch-wire.md's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchrunner.fakeserver import error_bodies, render
from batchrunner.fakeserver.config import FakeServerConfig
from batchrunner.fakeserver.faults import FaultKind, FaultPlan
from batchrunner.fakeserver.prompts import Api, BadRequest, parse_call

INVALID_DIRECTIVE = "[[batch:invalid]]"
"""In a line's prompt: the whole batch fails validation (OpenAI) or is refused with a 400 (Anthropic)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LineAnswer:
    """The answer one batch line will get when its turn comes."""

    custom_id: str
    status: int
    body: bytes
    """The JSON body the realtime route would send (an answer, or an error in the provider's shape)."""
    request_id: str
    ident: str
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 200


def prompt_key(api: Api, body: Any, config: FakeServerConfig) -> str | None:
    """The line's prompt key (``None`` when the body is not one the API accepts)."""
    try:
        return parse_call(api, body, default_max_tokens=config.default_max_tokens).key
    except BadRequest:
        return None


def answer_line(
    api: Api,
    custom_id: str,
    body: Any,
    *,
    config: FakeServerConfig,
    ident: str,
    attempt: int,
    plan_for: Callable[[str], FaultPlan | None],
) -> LineAnswer:
    """The answer to one line, as the realtime route would give it to attempt ``attempt`` of its prompt."""
    anthropic = api.is_anthropic
    request_id = f"req_{ident}"
    try:
        call = parse_call(api, body, default_max_tokens=config.default_max_tokens)
        try:
            plan = plan_for(call.key)
        except ValueError as exc:
            raise BadRequest(f"bad fault directive in the prompt: {exc}") from None
    except BadRequest as exc:
        error = error_bodies.bad_request(exc.message, exc.param, anthropic=anthropic, request_id=request_id)
        return _error(custom_id, error, request_id, ident)
    fault = plan.fault_for(attempt) if plan is not None else None
    if fault is not None and fault in error_bodies.ERROR_FAULTS:
        error = error_bodies.fault_error(
            fault,
            anthropic=anthropic,
            model=call.model,
            request_id=request_id,
            retry_after_s=config.retry_after_s,
        )
        return _error(custom_id, error, request_id, ident)
    rendered = render.render(
        dataclasses.replace(call, stream=False, include_usage=False),
        ident=ident,
        with_usage=fault is not FaultKind.NO_USAGE,
        embedding_dim=config.embedding_dim,
    )
    assert rendered.body is not None
    return LineAnswer(
        custom_id=custom_id,
        status=200,
        body=rendered.body,
        request_id=request_id,
        ident=ident,
        input_tokens=rendered.input_tokens,
        output_tokens=rendered.output_tokens,
    )


def _error(custom_id: str, error: error_bodies.WireError, request_id: str, ident: str) -> LineAnswer:
    return LineAnswer(
        custom_id=custom_id, status=error.status, body=error.body, request_id=request_id, ident=ident
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def openai_result(line: LineAnswer) -> bytes:
    """An output-file line (or an error-file line of a failed request): the response in its envelope."""
    return (
        b'{"id":"batch_req_' + line.ident.encode() + b'","custom_id":' + _dumps(line.custom_id)
        + b',"response":{"status_code":' + str(line.status).encode()
        + b',"request_id":' + _dumps(line.request_id) + b',"body":' + line.body + b'},"error":null}\n'
    )  # fmt: skip


_NOT_RUN = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


def openai_not_run(line: LineAnswer, code: str) -> bytes:
    """An error-file line for a request the batch never ran (``batch_expired`` or ``batch_cancelled``)."""
    error = {"code": code, "message": _NOT_RUN[code]}
    return (
        _dumps(
            {"id": f"batch_req_{line.ident}", "custom_id": line.custom_id, "response": None, "error": error}
        )
        + b"\n"
    )


def anthropic_result(line: LineAnswer, kind: str) -> bytes:
    """A results line: ``succeeded`` (the message), ``errored`` (the error), ``expired`` or ``canceled``."""
    head = b'{"custom_id":' + _dumps(line.custom_id) + b',"result":{"type":"' + kind.encode() + b'"'
    if kind == "succeeded":
        return head + b',"message":' + line.body + b"}}\n"
    if kind == "errored":
        return head + b',"error":' + line.body + b"}}\n"
    return head + b"}}\n"
