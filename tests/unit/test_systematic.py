"""The systematic-failure tracker, fed answers by hand (no runner, no clock), and its outcome filter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchrunner.engine.systematic import (
    REFUNDED_CLASS,
    OutcomeFilter,
    Systematic,
    SystematicFailures,
    Verdict,
    failure_class,
    given_back,
)
from batchrunner.errors import PermanentError
from batchrunner.models import AttemptRecord, ClaimedJob, JobState, Lease, Outcome
from batchrunner.providers.errors import error_from_response

KEY = ("openai", "gpt-nope")
OTHER = ("openai", "gpt-4o-mini")
NF = "HTTP 404 model_not_found"
MESSAGE = "openai: HTTP 404 model_not_found: The model `gpt-nope` does not exist."


def fail_n(tracker: SystematicFailures[int], n: int, key: tuple[str, str | None] = KEY) -> list[Verdict[int]]:
    return [tracker.failed(key, NF, MESSAGE, i) for i in range(n)]


def test_twenty_alike_are_systematic_and_every_one_is_given_back() -> None:
    tracker: SystematicFailures[int] = SystematicFailures(threshold=20)
    verdicts = fail_n(tracker, 20)
    assert all(v == Verdict() for v in verdicts[:19])  # held: nothing written yet
    assert tracker.held == 0  # the 20th decided: all given back
    last = verdicts[19]
    assert last.write == [] and last.requeue == list(range(20))
    assert last.stops == [Systematic(key=KEY, failure=NF, count=20, message=MESSAGE)]


def test_answers_in_flight_after_the_decision_are_given_back_too() -> None:
    tracker: SystematicFailures[int] = SystematicFailures(threshold=3)
    fail_n(tracker, 3)
    assert tracker.failed(KEY, NF, MESSAGE, 99) == Verdict(requeue=[99])  # same class: requeued, no new stop
    assert tracker.failed(KEY, "HTTP 400", "other", 98) == Verdict(write=[98])  # another class: as usual
    assert tracker.succeeded(KEY, 97) == Verdict(write=[97])  # a paid answer is always kept


def test_a_success_makes_the_key_healthy_and_writes_what_was_held() -> None:
    tracker: SystematicFailures[int] = SystematicFailures(threshold=3)
    fail_n(tracker, 2)
    assert tracker.succeeded(KEY, 50) == Verdict(write=[0, 1, 50])
    assert fail_n(tracker, 5)[-1] == Verdict(write=[4])  # healthy for good: failures fail at once
    assert tracker.held == 0


def test_a_different_class_makes_the_key_healthy() -> None:
    tracker: SystematicFailures[int] = SystematicFailures(threshold=3)
    fail_n(tracker, 2)
    assert tracker.failed(KEY, "HTTP 422", "unprocessable", 7) == Verdict(write=[0, 1, 7])
    assert tracker.failed(KEY, NF, MESSAGE, 8) == Verdict(write=[8])


def test_keys_are_judged_apart() -> None:
    """A healthy model does not clear a bad one, nor does the same model of another provider."""
    tracker: SystematicFailures[int] = SystematicFailures(threshold=2)
    assert tracker.succeeded(OTHER, 1) == Verdict(write=[1])
    assert tracker.succeeded(("anthropic", "gpt-nope"), 2) == Verdict(write=[2])
    fail_n(tracker, 1)
    assert tracker.failed(KEY, NF, MESSAGE, 3).stops[0].key == KEY


def test_settle_with_stop_judges_the_few_jobs_held_as_systematic() -> None:
    """Nothing left to send: a key holding 3 alike failures (all of its jobs) is systematic."""
    tracker: SystematicFailures[int] = SystematicFailures(threshold=20)
    fail_n(tracker, 3)
    tracker.succeeded(OTHER, 10)
    verdict = tracker.settle(stop=True)
    assert verdict.requeue == [0, 1, 2] and verdict.write == []
    assert [s.count for s in verdict.stops] == [3]
    assert tracker.settle(stop=True) == Verdict()  # decided once


def test_settle_with_stop_spares_keys_that_succeeded_before() -> None:
    """A resumed run's last poison jobs: their model answered before (``healthy``), so they fail."""
    tracker: SystematicFailures[int] = SystematicFailures(threshold=20)
    fail_n(tracker, 2)
    fail_n(tracker, 1, key=OTHER)
    assert sorted(tracker.undecided()) == sorted([KEY, OTHER])
    verdict = tracker.settle(stop=True, healthy=[OTHER])
    assert verdict.write == [0] and verdict.requeue == [0, 1] and [s.key for s in verdict.stops] == [KEY]
    assert tracker.undecided() == [] and tracker.failed(OTHER, NF, MESSAGE, 9) == Verdict(write=[9])


def test_settle_without_stop_only_gives_back_and_leaves_the_key_undecided() -> None:
    tracker: SystematicFailures[int] = SystematicFailures(threshold=3)
    fail_n(tracker, 2)
    assert tracker.settle(stop=False) == Verdict(requeue=[0, 1])
    assert tracker.failed(KEY, NF, MESSAGE, 5) == Verdict()  # still undecided: held again


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        SystematicFailures(threshold=0)


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (404, "model_not_found", "HTTP 404 model_not_found"),
        (400, None, "HTTP 400"),  # LiteLLM's "No connected db." comes without a type
        (None, None, None),  # refused before sending (a local check): not an answer of the provider
    ],
)
def test_failure_class(status: int | None, error_type: str | None, expected: str | None) -> None:
    assert failure_class(status, error_type) == expected


def test_the_error_type_comes_from_the_providers_body() -> None:
    """The adapters' translation keeps the code (or else the type) that classes are told apart by."""
    body = {"error": {"message": "nope", "type": "invalid_request_error", "code": "model_not_found"}}
    error = error_from_response(
        "openai", status=404, headers={}, body=body, request_id=None, rate_limits=None, secrets=(), now=0
    )
    assert isinstance(error, PermanentError) and error.error_type == "model_not_found"
    typed = error_from_response(
        "openai",
        status=400,
        headers={},
        body={"error": {"message": "No connected db.", "type": "invalid_request_error"}},
        request_id=None,
        rate_limits=None,
        secrets=(),
        now=0,
    )
    assert typed.error_type == "invalid_request_error"


def test_reason_names_provider_model_status_and_text_once() -> None:
    stop = Systematic(key=KEY, failure=NF, count=20, message=MESSAGE)
    assert stop.reason.startswith(
        "openai: model 'gpt-nope': the first 20 answers all failed with "
        "HTTP 404 model_not_found: The model `gpt-nope` does not exist. (the jobs are left pending"
    )
    assert Systematic(key=KEY, failure=NF, count=1, message=MESSAGE).reason.count("the only answer") == 1


# -- the filter the runner uses ---------------------------------------------------------------------------


def job(n: int, model: str = "gpt-nope") -> ClaimedJob:
    return ClaimedJob(
        lease=Lease(job_id=n, token=f"t{n}"),
        custom_id=f"j{n}",
        line_number=n,
        provider="openai",
        endpoint="/v1/chat/completions",
        model=model,
        request_json="{}",
        attempt=1,
    )


def failed(n: int, kind: str | None = NF) -> Outcome:
    attempt = AttemptRecord(
        number=1, runner_id="r", started_at=datetime.now(UTC), status_code=404, error_class="permanent"
    )
    return Outcome(
        lease=Lease(job_id=n, token=f"t{n}"),
        attempt=attempt,
        state=JobState.FAILED,
        error_class="permanent",
        error=MESSAGE,
        failure_class=kind,
    )


def test_filter_holds_then_gives_back_refunded_and_stops() -> None:
    written: list[Outcome] = []
    reasons: list[str] = []
    outcomes = OutcomeFilter(write=written.append, stop=reasons.append, threshold=3)
    outcomes.add(job(1), failed(1))
    outcomes.add(job(2), failed(2, kind=None))  # no failure class (exhausted retries, local): as usual
    assert [o.lease.job_id for o in written] == [2] and outcomes.held == 1
    outcomes.add(job(3), failed(3))
    outcomes.add(job(4), failed(4))
    assert len(reasons) == 1 and "the first 3 answers" in reasons[0]
    back = written[1:]
    assert [o.lease.job_id for o in back] == [1, 3, 4]
    for outcome in back:
        assert outcome.state is JobState.PENDING and outcome.refund_attempt and outcome.not_before is None
        assert outcome.error_class == outcome.attempt.error_class == REFUNDED_CLASS
        assert outcome.attempt.status_code == 404 and outcome.error == MESSAGE  # what was said is kept


def test_filter_disabled_writes_everything_as_it_comes() -> None:
    written: list[Outcome] = []
    outcomes = OutcomeFilter(write=written.append, stop=pytest.fail, enabled=False, threshold=1)
    outcome = failed(1)
    outcomes.add(job(1), outcome)
    assert written == [outcome]
    outcomes.settle(stop=True)
    assert written == [outcome]


def test_given_back_keeps_the_attempt_facts() -> None:
    outcome = given_back(failed(7))
    assert outcome.lease == Lease(job_id=7, token="t7")
    assert (outcome.state, outcome.refund_attempt, outcome.attempt.number) == (JobState.PENDING, True, 1)
