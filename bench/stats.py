"""Latency series and the few figures the report needs from them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Series:
    """Per-item durations in seconds; `wall` is the elapsed time when items overlapped."""

    samples: list[float] = field(default_factory=list)
    wall: float | None = None
    cpu_ms: float | None = None

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def rate(self) -> float:
        """Items per second: over the wall time when known, else back to back."""
        elapsed = self.wall if self.wall is not None else sum(self.samples)
        return len(self.samples) / elapsed if elapsed else 0.0

    def percentile(self, pct: float) -> float:
        """Nearest-rank percentile in milliseconds (p99 of a small sample is its maximum)."""
        ordered = sorted(self.samples)
        rank = max(1, -(-len(ordered) * pct // 100))
        return ordered[int(rank) - 1] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p99(self) -> float:
        return self.percentile(99)
