"""Unit tests of the fake server's pure parts: plans, dice, limiter (time controlled, no sleeping), books,
prompt keys, answers and config validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from batchrunner.fakeserver import FakeServerConfig, FaultKind, FaultPlan, load_schedule, parse_plan
from batchrunner.fakeserver.answers import cached_tokens, embedding, make_answer
from batchrunner.fakeserver.books import Books
from batchrunner.fakeserver.faults import Dice, directive_plan
from batchrunner.fakeserver.limits import SlidingWindowLimiter
from batchrunner.fakeserver.openai_wire import duration
from batchrunner.fakeserver.prompts import Api, BadRequest, parse_call

E500, E400, E429 = FaultKind.SERVER_ERROR, FaultKind.BAD_REQUEST, FaultKind.RATE_LIMIT


@pytest.mark.parametrize(
    ("spec", "outcomes"),
    [
        ("500,500", [E500, E500, None, None]),  # two failures, then success forever
        ("*400", [E400, E400, E400, E400]),  # always
        ("429,*500", [E429, E500, E500, E500]),  # one 429, then 500 forever
        ("ok,reset", [None, FaultKind.RESET, None, None]),  # "ok" is an explicit success
        ([500, "429-date"], [E500, FaultKind.RATE_LIMIT_DATE, None, None]),  # JSON list form, ints allowed
        (" 500 , *ok ", [E500, None, None, None]),  # spaces are ignored
    ],
)
def test_plans_give_one_outcome_per_attempt(
    spec: str | list[str | int], outcomes: list[FaultKind | None]
) -> None:
    plan = parse_plan(spec)
    assert [plan.fault_for(attempt) for attempt in range(1, 5)] == outcomes


@pytest.mark.parametrize("spec", ["", "*500,400", "500,teapot", "418"])
def test_malformed_plans_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_plan(spec)


def test_directive_is_found_anywhere_in_the_prompt() -> None:
    assert directive_plan("plain prompt") is None
    assert directive_plan("say hi [[fault:500,500]] please") == FaultPlan(steps=(E500, E500))
    with pytest.raises(ValueError, match="unknown fault"):
        directive_plan("[[fault:nope]]")


def test_schedule_file(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"p1": ["500", "500"], "p2": "*reset"}))
    assert load_schedule(path) == {"p1": FaultPlan(steps=(E500, E500)), "p2": FaultPlan(then=FaultKind.RESET)}
    path.write_text(json.dumps({"p1": ["boom"]}))
    with pytest.raises(ValueError, match="p1"):
        load_schedule(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_schedule(path)


def test_seeded_dice_are_a_function_of_seed_prompt_and_attempt() -> None:
    rates = {FaultKind.SERVER_ERROR: 0.5}
    first, again, other = Dice(rates, 7), Dice(rates, 7), Dice(rates, 8)
    rolls = [first.roll(f"p{i}", attempt) for i in range(50) for attempt in (1, 2)]
    assert rolls == [again.roll(f"p{i}", attempt) for i in range(50) for attempt in (1, 2)]
    assert rolls != [other.roll(f"p{i}", attempt) for i in range(50) for attempt in (1, 2)]
    faults = [first.pick(draw) for draw, _ in rolls]
    assert 20 < faults.count(FaultKind.SERVER_ERROR) < 80  # about half of 100
    assert all(0 <= jitter < 1 for _, jitter in rolls)


def test_dice_pick_walks_cumulative_probabilities() -> None:
    dice = Dice({FaultKind.SERVER_ERROR: 0.25, FaultKind.RESET: 0.25, FaultKind.HANG: 0.0}, None)
    assert [dice.pick(u) for u in (0.0, 0.24, 0.25, 0.49, 0.5, 0.99)] == [
        E500,
        E500,
        FaultKind.RESET,
        FaultKind.RESET,
        None,
        None,
    ]


def test_limiter_admits_at_most_the_window_cap_in_any_window() -> None:
    limiter = SlidingWindowLimiter(rpm=600, tpm=None, window_s=1.0)  # 10 per second
    admitted = [t / 100 for t in range(300) if limiter.acquire(t / 100, 1).admitted]  # 100 req/s for 3 s
    assert len(admitted) == 30
    for start in admitted:  # every window that starts at an admitted request holds at most 10
        assert sum(1 for t in admitted if start <= t < start + 1.0) <= 10


def test_limiter_refusal_says_when_to_retry_and_headers_count_down() -> None:
    limiter = SlidingWindowLimiter(rpm=120, tpm=None, window_s=1.0)  # 2 per second
    first = limiter.acquire(10.0, 1)
    assert first.requests is not None and first.requests.limit == 120 and first.requests.remaining == 60
    second = limiter.acquire(10.25, 1)
    assert (
        second.requests is not None and second.requests.remaining == 0
    )  # 0 exactly when the next is refused
    refused = limiter.acquire(10.5, 1)
    assert not refused.admitted and refused.refused_by == "requests"
    assert refused.retry_after_s == pytest.approx(0.5)  # the request at 10.0 leaves the window at 11.0
    assert not limiter.acquire(10.99, 1).admitted  # refusals take no room ...
    assert limiter.acquire(11.0, 1).admitted  # ... so the retry at the announced time is admitted


def test_limiter_tokens_charge_input_plus_max_tokens() -> None:
    limiter = SlidingWindowLimiter(rpm=None, tpm=6000, window_s=1.0)  # 100 tokens per second
    assert limiter.acquire(0.0, 60).admitted
    assert limiter.acquire(0.2, 30).admitted
    refused = limiter.acquire(0.4, 30)
    assert refused.refused_by == "tokens" and refused.retry_after_s == pytest.approx(0.6)
    assert refused.tokens is not None and refused.tokens.remaining == 600  # 10 left in the window, per minute
    too_big = limiter.acquire(0.5, 1000)
    assert not too_big.admitted and too_big.retry_after_s == 1.0


def test_limiter_window_caps_round_down_but_admit_at_least_one() -> None:
    assert SlidingWindowLimiter(rpm=90, tpm=30, window_s=1.0).window_caps == (1, 1)
    assert SlidingWindowLimiter(rpm=600, tpm=60_000, window_s=6.0).window_caps == (60, 6000)


def test_books_count_duplicates_incrementally_and_reset_keeps_in_flight() -> None:
    books = Books()
    for _ in range(3):
        books.begin("/v1/chat/completions")
    books.end()
    assert books.attempt("a") == 1 and books.attempt("a") == 2 and books.attempt("b") == 1
    for key in ("a", "a", "a", "b"):
        books.answer(key, input_tokens=2, output_tokens=3, cached_tokens=0)
    stats = books.snapshot()
    assert stats["duplicates"] == 2 and stats["answers"] == {"a": 3, "b": 1} and stats["answers_total"] == 4
    assert stats["tokens"] == {"input": 8, "output": 12, "cached": 0}
    assert stats["peak_concurrency"] == 3 and stats["in_flight"] == 2
    assert stats["answer_span_s"] >= 0
    books.clear()
    assert books.snapshot(prompts=False) == {
        "requests": 0,
        "in_flight": 2,
        "peak_concurrency": 2,
        "by_route": {},
        "by_status": {},
        "by_fault": {},
        "limit_violations": 0,
        "disconnects": 0,
        "prompts": 0,
        "answers_total": 0,
        "streams": 0,
        "duplicates": 0,
        "answer_span_s": None,
        "tokens": {"input": 0, "output": 0, "cached": 0},
        "batch_requests": 0,
        "batch_by_status": {},
        "batch_files": 0,
        "batches": {},
        "batches_failed": 0,
        "batch_lines": 0,
        "batch_line_duplicates": 0,
        "batch_answers": 0,
        "batch_errors": 0,
        "batch_tokens": {"input": 0, "output": 0},
    }


def test_batch_books_count_placements_apart_from_the_realtime_books() -> None:
    books = Books()
    assert books.batch.place("a") == 1 and books.batch.place("a") == 2 and books.batch.place(None) == 1
    books.batch.batch("openai", failed=False)
    books.batch.settled(answers=2, errors=1, input_tokens=4, output_tokens=6)
    stats = books.snapshot()
    assert stats["batch_lines"] == 3 and stats["batch_line_duplicates"] == 1
    assert stats["batch_placements"] == {"a": 2} and stats["batches"] == {"openai": 1}
    assert stats["batch_answers"] == 2 and stats["batch_errors"] == 1
    assert stats["requests"] == 0 and stats["answers_total"] == 0 and stats["duplicates"] == 0
    books.clear()
    assert books.snapshot()["batch_placements"] == {}


def test_prompt_keys() -> None:
    chat = parse_call(
        Api.CHAT,
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}],
                },
                {"role": "assistant", "content": "ok"},
            ],
        },
        default_max_tokens=50,
    )
    assert chat.key == "part one\ntwo"  # the last *user* message, text parts joined
    assert chat.input_tokens == math.ceil(len("be brief" + "part one\ntwo" + "ok") / 4)
    assert chat.max_tokens == 50
    embeddings = parse_call(Api.EMBEDDINGS, {"model": "e", "input": ["x", "yy"]}, default_max_tokens=50)
    assert embeddings.key == "x\nyy" and embeddings.inputs == ("x", "yy") and embeddings.input_tokens == 1
    responses = parse_call(
        Api.RESPONSES, {"model": "m", "input": "hello", "max_output_tokens": 7}, default_max_tokens=50
    )
    assert responses.key == "hello" and responses.max_tokens == 7
    messages = parse_call(
        Api.MESSAGES,
        {"model": "c", "max_tokens": 9, "system": "s" * 8, "messages": [{"role": "user", "content": "hi"}]},
        default_max_tokens=50,
    )
    assert messages.key == "hi" and messages.input_tokens == 3 and messages.max_tokens == 9


@pytest.mark.parametrize(
    ("api", "body", "param"),
    [
        (Api.CHAT, {"messages": [{"role": "user", "content": "x"}]}, "model"),
        (Api.CHAT, {"model": "m", "messages": []}, "messages"),
        (
            Api.CHAT,
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        (Api.MESSAGES, {"model": "c", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (Api.EMBEDDINGS, {"model": "e", "input": 5}, "input"),
        (Api.RESPONSES, {"model": "m"}, "input"),
    ],
)
def test_bad_bodies_name_the_parameter(api: Api, body: dict[str, object], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_call(api, body, default_max_tokens=50)
    assert caught.value.param == param


def test_answers_are_deterministic_and_respect_max_tokens() -> None:
    answer = make_answer("prompt", max_tokens=1000, input_tokens=5)
    assert answer == make_answer("prompt", max_tokens=1000, input_tokens=5)
    assert 3 <= answer.output_tokens <= 32 and not answer.truncated
    assert answer.text == " ".join(answer.words) and len(answer.words) == answer.output_tokens
    cut = make_answer("prompt", max_tokens=2, input_tokens=5)
    assert cut.output_tokens == 2 and cut.truncated and answer.text.startswith(cut.text)
    assert make_answer("another prompt", max_tokens=1000, input_tokens=5).text != answer.text


def test_cached_tokens_and_embeddings() -> None:
    assert cached_tokens(1023) == 0 and cached_tokens(1024) == 512 and cached_tokens(3000) == 1408
    vector = embedding("text", 16)
    assert len(vector) == 16 and math.isclose(math.fsum(v * v for v in vector), 1.0, abs_tol=1e-4)
    assert vector == embedding("text", 16) and vector != embedding("other", 16)


def test_durations_look_like_openai_headers() -> None:
    assert [duration(s) for s in (0.0, 0.02, 0.9994, 1.0, 1.5, 75.25)] == [
        "0ms",
        "20ms",
        "999ms",
        "1s",
        "1.5s",
        "1m15.25s",
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fault_rates": {FaultKind.SERVER_ERROR: 0.7, FaultKind.RESET: 0.5}}, "sum to at most 1"),
        ({"fault_rates": {FaultKind.SERVER_ERROR: 1.5}}, r"\[0, 1\]"),
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"window_s": 0.0}, "window_s"),
        ({"rpm": 0}, "rpm"),
        ({"api_key": ""}, "api_key"),
        ({"port": 70000}, "port"),
    ],
)
def test_config_refuses_nonsense(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FakeServerConfig(**fields)  # type: ignore[arg-type]


def test_config_accepts_fault_names_as_strings() -> None:
    config = FakeServerConfig(fault_rates={"500": 0.1})  # type: ignore[dict-item]
    assert dict(config.fault_rates) == {FaultKind.SERVER_ERROR: 0.1}
