"""A latency histogram that several processes fill and one merges: logarithmic buckets of 1%."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PERCENTILES", "Histogram"]

_BASE = math.log(1.01)  # a bucket spans 1%: percentiles are read within 1% of the recorded value
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


@dataclass
class Histogram:
    """Latencies in microseconds, counted by bucket; the exact maximum kept beside."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    max_us: float = 0.0

    def record(self, micros: float) -> None:
        bucket = int(math.log(micros) / _BASE) if micros > 1 else 0
        self.buckets[bucket] = self.buckets.get(bucket, 0) + 1
        self.count += 1
        if micros > self.max_us:
            self.max_us = micros

    def merge(self, other: Histogram) -> None:
        for bucket, count in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + count
        self.count += other.count
        self.max_us = max(self.max_us, other.max_us)

    def percentile(self, fraction: float) -> float:
        """The latency (µs) under which `fraction` of the calls fell: the upper edge of its bucket."""
        if not self.count:
            return 0.0
        wanted = math.ceil(fraction * self.count)
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= wanted:
                return min(math.exp((bucket + 1) * _BASE), self.max_us)
        return self.max_us

    def summary_ms(self) -> dict[str, float]:
        figures = {name: round(self.percentile(fraction) / 1000, 3) for name, fraction in PERCENTILES}
        figures["max"] = round(self.max_us / 1000, 3)
        return figures

    def as_dict(self) -> dict[str, Any]:
        return {"buckets": {str(k): v for k, v in self.buckets.items()}, "count": self.count, "max_us": self.max_us}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        return cls({int(k): int(v) for k, v in data["buckets"].items()}, int(data["count"]), float(data["max_us"]))
