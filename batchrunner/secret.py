"""``Secret``: an API key that cannot leak by accident (docs/reliability.md rule 11, STYLE habit 18).

Its ``repr`` and ``str`` show ``'***'``, so a key that ends up in a log line, an f-string, a dataclass
``repr`` or a traceback's locals is masked; the value is read only on purpose, with
:meth:`Secret.get_secret_value`, at the one place that hands it to an SDK.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MASK", "Secret"]

MASK: Final = "***"
"""What a secret looks like wherever it is printed."""


class Secret:
    """A string that masks itself in ``repr``, ``str`` and formatting.

    Equality compares the hidden values (two settings objects with the same key are equal), but the
    hash is constant so that a dictionary keyed by secrets does not expose anything through its layout.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself: call this only where the key is handed to an SDK."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return format(MASK, format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(Secret)

    def __bool__(self) -> bool:
        return bool(self._value)
