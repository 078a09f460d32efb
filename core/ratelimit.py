"""Rate limits: a fixed-window counter per key, in Redis when there is one, in memory otherwise.

Used where the internet reaches Pelago without a bearer key (the channel
webhooks, later the console's sign-in), so a flood or a brute force is
answered 429 with ``Retry-After`` before it costs the database anything.

The window is read from the runtime's clock, so tests move time instead of
sleeping. In production every app process counts in the same Redis keys
(``pelago:rl:<key>:<window>``, expiring with their window): a limit holds
across gunicorn workers and hosts. The embedded mode has one process, and
counts in it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Rate:
    """``limit`` hits per ``seconds``; ``limit == 0`` means no limit."""

    limit: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"600/60"`` (600 a minute), ``"0"`` (off)."""
        text = text.strip()
        if text in ("", "0", "off"):
            return cls(0, 60)
        count, _, per = text.partition("/")
        rate = cls(int(count), int(per or 60))
        if rate.limit < 0 or rate.seconds <= 0:
            raise ValueError(f"a rate is COUNT/SECONDS with COUNT >= 0 and SECONDS > 0, not {text!r}")
        return rate


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the window that refused this ends (0 when allowed)


class Limiter(Protocol):
    def hit(self, key: str, rate: Rate) -> Verdict: ...

    def peek(self, key: str, rate: Rate) -> Verdict:
        """Whether ``key`` is already past ``rate`` in this window, without counting a hit.

        For limits on failures (the console's sign-in): a refused key is
        answered before the work, and only a failure is counted.
        """
        ...


def _window(now: datetime, rate: Rate) -> tuple[int, int]:
    """``(window number, seconds left in it)`` at ``now``."""
    t = now.timestamp()
    number = int(t // rate.seconds)
    left = max(1, math.ceil((number + 1) * rate.seconds - t))
    return number, left


class MemoryLimiter:
    """Counts in this process (the embedded mode, tests), one bucket of counts per window.

    Counts are kept by window (``(seconds, number)`` → key → count). A hit
    drops the buckets of windows that have ended, which costs one look at
    each *bucket* (there are as many as distinct rates times two at most),
    never a pass over every key: expiry is amortised, each count is dropped
    once, with its whole window. ``dropped`` counts the counts dropped so
    (tests check the bound on that work).
    """

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self._buckets: dict[tuple[int, int], dict[str, int]] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def hit(self, key: str, rate: Rate) -> Verdict:
        if rate.limit == 0:
            return Verdict(True, 0)
        number, left = _window(self.clock(), rate)
        with self._lock:
            bucket = self._buckets.get((rate.seconds, number))
            if bucket is None:
                # A new window of this length began: its ended ones go, whole.
                for window in [w for w in self._buckets if w[0] == rate.seconds and w[1] < number]:
                    self.dropped += len(self._buckets.pop(window))
                bucket = self._buckets[(rate.seconds, number)] = {}
            count = bucket.get(key, 0) + 1
            bucket[key] = count
        return Verdict(count <= rate.limit, 0 if count <= rate.limit else left)

    @property
    def size(self) -> int:
        """Counts held (live windows only, once a hit has seen their end)."""
        with self._lock:
            return sum(len(b) for b in self._buckets.values())

    def peek(self, key: str, rate: Rate) -> Verdict:
        if rate.limit == 0:
            return Verdict(True, 0)
        number, left = _window(self.clock(), rate)
        with self._lock:
            count = self._buckets.get((rate.seconds, number), {}).get(key, 0)
        return Verdict(count < rate.limit, 0 if count < rate.limit else left)


class RedisLimiter:
    """Counts in Redis: one ``INCR`` and ``EXPIRE`` per hit, in one round trip.

    If Redis does not answer, the request is let through (and logged by the
    caller's log): a rate limit must not turn a Redis outage into an intake outage.
    """

    def __init__(self, redis: Any, clock: Callable[[], datetime], prefix: str = "pelago:rl") -> None:
        self.redis = redis
        self.clock = clock
        self.prefix = prefix

    def hit(self, key: str, rate: Rate) -> Verdict:
        if rate.limit == 0:
            return Verdict(True, 0)
        number, left = _window(self.clock(), rate)
        name = f"{self.prefix}:{key}:{number}"
        try:
            pipe = self.redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, rate.seconds + 1)
            count = int(pipe.execute()[0])
        except Exception:  # noqa: BLE001 - fail open, see the class docstring
            import logging

            logging.getLogger("pelago").warning("rate limit %s not checked: Redis did not answer", key)
            return Verdict(True, 0)
        return Verdict(count <= rate.limit, 0 if count <= rate.limit else left)

    def peek(self, key: str, rate: Rate) -> Verdict:
        if rate.limit == 0:
            return Verdict(True, 0)
        number, left = _window(self.clock(), rate)
        try:
            count = int(self.redis.get(f"{self.prefix}:{key}:{number}") or 0)
        except Exception:  # noqa: BLE001 - fail open, as hit() does
            return Verdict(True, 0)
        return Verdict(count < rate.limit, 0 if count < rate.limit else left)
