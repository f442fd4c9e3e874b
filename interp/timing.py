"""Where a job's time goes: named phases timed with a wall clock, for the console and the metadata.

Every job times its phases (``load``, ``score``, ``write``, ``figures``, ...) with one
:class:`PhaseTimer`; the total runs from the timer's creation, so the printed wall time covers the
whole command, not only the phases.

>>> timer = PhaseTimer()
>>> with timer.phase("score"):
...     _ = sum(range(1000))
>>> sorted(timer.as_dict()) == ["phases", "total_seconds"] and "score" in timer.as_dict()["phases"]
True
>>> timer.summary().startswith("time: ")
True
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

__all__ = ["PhaseTimer"]


class PhaseTimer:
    """Wall-clock seconds per named phase; a phase entered twice accumulates."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - began

    def total(self) -> float:
        return time.perf_counter() - self.start

    def as_dict(self) -> dict:
        """``{"total_seconds": ..., "phases": {name: seconds}}`` rounded to ms, for the metadata."""
        return {"total_seconds": round(self.total(), 3),
                "phases": {name: round(seconds, 3) for name, seconds in self.phases.items()}}

    def summary(self) -> str:
        """One console line: each phase's seconds and share of the total."""
        total = max(self.total(), 1e-9)
        parts = [f"{name} {seconds:.1f} s ({seconds / total:.0%})" for name, seconds in self.phases.items()]
        other = total - sum(self.phases.values())
        if other > 0.05:
            parts.append(f"other {other:.1f} s ({other / total:.0%})")
        return f"time: {total:.1f} s in all; " + ", ".join(parts)
