"""Which fault a request meets: fault kinds, per-prompt schedules and seeded random draws.

Everything here is pure: the server asks "what happens to attempt ``n`` of prompt ``key``?" and gets a
:class:`FaultKind` or ``None`` (answer normally). Rendering a fault on the wire is ``errors.py`` and
``transport.py``'s job.

Schedule syntax (a *plan*), used both in prompt directives and in ``--schedule`` files: a comma-separated
list of fault kinds (or ``ok``), one per attempt; attempts past the end of the list succeed. A ``*`` before
the last item repeats it for every later attempt::

    500,500        attempts 1 and 2 get a 500, attempt 3 and later succeed
    *400           every attempt gets a 400
    429,*500       attempt 1 gets a 429, every later attempt a 500
    ok,reset       attempt 1 succeeds, attempt 2 has its connection reset, later ones succeed

A directive is a plan wrapped as ``[[fault:PLAN]]`` anywhere in the prompt text.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path


class FaultKind(StrEnum):
    """A fault the server can inject; the value is its name in plans and ``--p<name>`` flags."""

    RATE_LIMIT = "429"
    RATE_LIMIT_DATE = "429-date"
    BAD_REQUEST = "400"
    UNAUTHORIZED = "401"
    FORBIDDEN = "403"
    NOT_FOUND = "404"
    REQUEST_TIMEOUT = "408"
    CONFLICT = "409"
    UNPROCESSABLE = "422"
    SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    GATEWAY_TIMEOUT = "504"
    OVERLOADED = "529"
    RESET = "reset"
    HANG = "hang"
    TRUNCATE = "truncate"
    BAD_JSON = "bad-json"
    HTML = "html"
    NO_USAGE = "no-usage"
    QUOTA = "quota"
    CREDIT = "credit"

    @property
    def description(self) -> str:
        """What the fault does, for ``--help`` and docs."""
        return _DESCRIPTIONS[self]

    @property
    def breaks_connection(self) -> bool:
        """True when the fault leaves no complete HTTP response behind."""
        return self in (FaultKind.RESET, FaultKind.HANG, FaultKind.TRUNCATE)


_DESCRIPTIONS: dict[FaultKind, str] = {
    FaultKind.RATE_LIMIT: "429 rate limited, with retry-after (seconds) and retry-after-ms.",
    FaultKind.RATE_LIMIT_DATE: "429 rate limited, with retry-after as an HTTP date.",
    FaultKind.BAD_REQUEST: "400 invalid request.",
    FaultKind.UNAUTHORIZED: "401 invalid API key.",
    FaultKind.FORBIDDEN: "403 permission denied.",
    FaultKind.NOT_FOUND: "404 model not found.",
    FaultKind.REQUEST_TIMEOUT: "408 request timeout.",
    FaultKind.CONFLICT: "409 conflict.",
    FaultKind.UNPROCESSABLE: "422 unprocessable entity.",
    FaultKind.SERVER_ERROR: "500 internal server error.",
    FaultKind.BAD_GATEWAY: "502 bad gateway.",
    FaultKind.UNAVAILABLE: "503 service unavailable.",
    FaultKind.GATEWAY_TIMEOUT: "504 gateway timeout.",
    FaultKind.OVERLOADED: "529 overloaded (overloaded_error), with x-should-retry: true.",
    FaultKind.RESET: "connection reset (TCP RST), no response.",
    FaultKind.HANG: "no answer until the client gives up (or --max-hang-s passes).",
    FaultKind.TRUNCATE: (
        "200 whose body stops half way (a stream: after --cut-after-events events), then the connection "
        "closes."
    ),
    FaultKind.BAD_JSON: "200 with a body that is not valid JSON.",
    FaultKind.HTML: "200 with an HTML page instead of JSON.",
    FaultKind.NO_USAGE: "200 with a normal answer but no usage.",
    FaultKind.QUOTA: "OpenAI 429 insufficient_quota (Anthropic routes: the credit-balance 400).",
    FaultKind.CREDIT: "Anthropic 400 credit balance too low (OpenAI routes: 429 insufficient_quota).",
}

_OK = "ok"
DIRECTIVE_RE = re.compile(r"\[\[fault:([^\]]*)\]\]")
"""A fault directive inside prompt text: ``[[fault:PLAN]]``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultPlan:
    """Faults for one prompt by attempt number (1-based); ``None`` means "answer normally"."""

    steps: tuple[FaultKind | None, ...] = ()
    then: FaultKind | None = None
    """The outcome of every attempt after ``steps``."""

    def fault_for(self, attempt: int) -> FaultKind | None:
        if 1 <= attempt <= len(self.steps):
            return self.steps[attempt - 1]
        return self.then


def parse_plan(spec: str | Sequence[str | int]) -> FaultPlan:
    """Parse ``"500,500"``, ``"*400"``, ``["429", "*500"]`` or ``[500, 500]`` into a :class:`FaultPlan`.

    Raises ``ValueError`` with the offending item when the spec is malformed.
    """
    items = spec.split(",") if isinstance(spec, str) else [str(item) for item in spec]
    items = [item.strip() for item in items]
    if not items or items == [""]:
        raise ValueError("empty fault plan")
    steps: list[FaultKind | None] = []
    for index, item in enumerate(items):
        forever = item.startswith("*")
        if forever and index != len(items) - 1:
            raise ValueError(f"{item!r}: only the last item of a fault plan may start with '*'")
        outcome = _parse_item(item.removeprefix("*").strip())
        if forever:
            return FaultPlan(steps=tuple(steps), then=outcome)
        steps.append(outcome)
    return FaultPlan(steps=tuple(steps))


def _parse_item(item: str) -> FaultKind | None:
    if item == _OK:
        return None
    try:
        return FaultKind(item)
    except ValueError:
        known = ", ".join([_OK, *(kind.value for kind in FaultKind)])
        raise ValueError(f"unknown fault {item!r} (known: {known})") from None


@lru_cache(maxsize=4096)
def _cached_plan(spec: str) -> FaultPlan:
    return parse_plan(spec)


def directive_plan(text: str) -> FaultPlan | None:
    """The plan of the first ``[[fault:...]]`` directive in ``text``, if any (``ValueError`` if malformed)."""
    if "[[fault:" not in text:  # the common case stays a substring test
        return None
    match = DIRECTIVE_RE.search(text)
    return None if match is None else _cached_plan(match.group(1))


def load_schedule(path: str | Path) -> dict[str, FaultPlan]:
    """Read a ``--schedule`` file: a JSON object mapping prompt key -> plan (a list of items, or a string)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the schedule: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a schedule must be a JSON object mapping prompt key -> list of faults")
    schedule: dict[str, FaultPlan] = {}
    for key, spec in raw.items():
        if not isinstance(spec, str | list) or not all(isinstance(item, str | int) for item in spec):
            raise ValueError(f"{path}: {key!r}: a plan must be a string or a list of fault names")
        try:
            schedule[key] = parse_plan(spec)
        except ValueError as exc:
            raise ValueError(f"{path}: {key!r}: {exc}") from None
    return schedule


class Dice:
    """Random draws for one request: which random fault (if any) and how much jitter.

    With a seed the draws are a pure function of (seed, prompt key, attempt), so a killed and restarted run
    that sends the same prompts meets the same faults and the same latencies. Without one they are random.
    """

    __slots__ = ("_cumulative", "_rng", "_seed")

    def __init__(self, rates: Mapping[FaultKind, float], seed: int | None) -> None:
        self._seed = None if seed is None else hashlib.blake2b(str(seed).encode(), digest_size=32).digest()
        self._rng = random.Random()
        total = 0.0
        cumulative: list[tuple[float, FaultKind]] = []
        for kind, rate in rates.items():
            if rate > 0:
                total += rate
                cumulative.append((total, kind))
        self._cumulative = tuple(cumulative)

    def roll(self, key: str, attempt: int) -> tuple[float, float]:
        """Two uniform numbers in [0, 1): one for the fault, one for the jitter."""
        if self._seed is None:
            return self._rng.random(), self._rng.random()
        digest = hashlib.blake2b(
            key.encode(), digest_size=16, key=self._seed, salt=attempt.to_bytes(16, "big")
        )
        raw = digest.digest()
        return int.from_bytes(raw[:8], "big") / 2**64, int.from_bytes(raw[8:], "big") / 2**64

    def pick(self, draw: float) -> FaultKind | None:
        """The random fault for a draw in [0, 1), or ``None``."""
        for bound, kind in self._cumulative:
            if draw < bound:
                return kind
        return None
