"""``--max-cost``: stop dispatching before the spent plus reserved worst case would pass the cap.

Each call reserves its worst case (prompt estimate at the input price, ``max_tokens`` at the output
price) before it is sent and settles to its real cost after; a call whose worst case does not fit is
not sent. So the cap holds even with hundreds of calls in flight.
"""

from __future__ import annotations

from decimal import Decimal


class Budget:
    """Spent and reserved USD against an optional cap."""

    def __init__(self, cap: Decimal | None, spent: Decimal = Decimal(0)) -> None:
        self.cap = cap
        self.spent = spent
        self.reserved = Decimal(0)

    def try_reserve(self, worst_case: Decimal | None) -> bool:
        """Reserve ``worst_case`` if it fits under the cap (always, with no cap). ``None``: no price."""
        if self.cap is None:
            return True
        if worst_case is None:
            return False
        if self.spent + self.reserved + worst_case > self.cap:
            return False
        self.reserved += worst_case
        return True

    def settle(self, reserved: Decimal | None, actual: Decimal | None) -> None:
        """Release a reservation and add what the call really cost (its worst case if unknown)."""
        if self.cap is not None and reserved is not None:
            self.reserved -= reserved
        cost = actual if actual is not None else (reserved if self.cap is not None else None)
        if cost is not None:
            self.spent += cost
