"""Benchmark: 1,000,000 business-day deadlines across 30 (time zone, country) pairs."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forewarn.calendar import business_days_before, business_days_before_many

PAIRS: list[tuple[str, str | None]] = [
    ("America/New_York", "US"),
    ("America/Chicago", "US"),
    ("America/Los_Angeles", "US"),
    ("America/Toronto", "CA"),
    ("America/Mexico_City", "MX"),
    ("America/Sao_Paulo", "BR"),
    ("America/Santiago", "CL"),
    ("America/Havana", "CU"),
    ("Europe/London", "GB"),
    ("Europe/Dublin", "IE"),
    ("Europe/Berlin", "DE"),
    ("Europe/Paris", "FR"),
    ("Europe/Madrid", "ES"),
    ("Europe/Rome", "IT"),
    ("Europe/Warsaw", "PL"),
    ("Europe/Helsinki", "FI"),
    ("Europe/Moscow", "RU"),
    ("Africa/Cairo", "EG"),
    ("Africa/Johannesburg", "ZA"),
    ("Asia/Jerusalem", "IL"),
    ("Asia/Riyadh", "SA"),
    ("Asia/Dubai", "AE"),
    ("Asia/Kolkata", "IN"),
    ("Asia/Shanghai", "CN"),
    ("Asia/Tokyo", "JP"),
    ("Australia/Sydney", "AU"),
    ("Australia/Lord_Howe", "AU"),
    ("Pacific/Auckland", "NZ"),
    ("Pacific/Chatham", "NZ"),
    ("UTC", None),
]
TOTAL = 1_000_000
REPEATS = 7
SCALAR_SAMPLE = 20_000
YEAR_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
YEAR_END = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())


def make_inputs(seed: int = 42) -> list[np.ndarray]:
    """TOTAL random instants over 2026, split evenly over the pairs."""
    rng = np.random.default_rng(seed)
    ts = rng.integers(YEAR_START, YEAR_END, TOTAL, dtype=np.int64)
    return np.array_split(ts, len(PAIRS))


def run_vectorised(chunks: list[np.ndarray]) -> float:
    """Seconds for one pass of business_days_before_many over every pair."""
    began = time.perf_counter()
    for (tz, country), chunk in zip(PAIRS, chunks, strict=True):
        business_days_before_many(chunk, 1, tz, country)
    return time.perf_counter() - began


def run_scalar(chunks: list[np.ndarray]) -> tuple[float, int]:
    """Seconds for the scalar function on SCALAR_SAMPLE instants, and that count."""
    per_pair = SCALAR_SAMPLE // len(PAIRS)
    began = time.perf_counter()
    for (tz, country), chunk in zip(PAIRS, chunks, strict=True):
        for ts in chunk[:per_pair].tolist():
            business_days_before(datetime.fromtimestamp(ts, UTC), 1, tz, country)
    return time.perf_counter() - began, per_pair * len(PAIRS)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    chunks = make_inputs()
    cold = run_vectorised(chunks)
    warm = [run_vectorised(chunks) for _ in range(REPEATS)]
    print(f"business_days_before_many: {TOTAL:,} deadlines, {len(PAIRS)} zone/country pairs")
    print(f"  cold (first pass, builds holiday + zone tables): {cold:.3f} s")
    print(f"  warm x{REPEATS}: median {statistics.median(warm):.3f} s, min {min(warm):.3f} s, max {max(warm):.3f} s")
    seconds, count = run_scalar(chunks)
    rate = seconds / count * 1e6
    print(f"business_days_before (scalar): {count:,} deadlines in {seconds:.3f} s", end="")
    print(f" ({rate:.1f} µs each)")
    print(f"peak RSS: {peak_rss_mib():.1f} MiB")


if __name__ == "__main__":
    main()
