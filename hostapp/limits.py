"""Rate limits on the routes the internet reaches without a key (:mod:`pelago.core.ratelimit`).

The app keeps one limiter (Redis-backed with ``REDIS_URL``, in memory
otherwise) and the configured rates; a route calls :func:`enforce` with a
key naming what is counted. Past the limit the caller gets 429 with
``Retry-After`` and nothing is done.
"""

from __future__ import annotations

from flask import Flask, current_app, request

from pelago.core.errors import RateLimited
from pelago.core.ratelimit import Limiter, MemoryLimiter, Rate, RedisLimiter
from pelago.core.runtime import Runtime

from .config import Settings


def install(app: Flask, runtime: Runtime, settings: Settings) -> None:
    """Give ``app`` its limiter and rates; behind ``PELAGO_PROXY_COUNT`` proxies, trust their client address."""
    limiter: Limiter
    if settings.redis_url:
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: a limiter that cannot count lets the request through at once.
        redis = Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1,
                               retry=Retry(NoBackoff(), 0))
        limiter = RedisLimiter(redis, runtime.clock)
    else:
        limiter = MemoryLimiter(runtime.clock)
    app.extensions["pelago_limiter"] = limiter
    app.extensions["pelago_rates"] = {
        "intake_channel": Rate.parse(settings.intake_rate_channel),
        "intake_address": Rate.parse(settings.intake_rate_address),
    }
    if settings.proxy_count:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_count)  # type: ignore[method-assign]


def client_address() -> str:
    """The caller's address (the proxies' ``X-Forwarded-For`` when ``PELAGO_PROXY_COUNT`` says to trust it)."""
    return request.remote_addr or "unknown"


def enforce(rate_name: str, key: str) -> None:
    """Count one hit of ``key`` against the configured rate ``rate_name``; 429 past it."""
    rate: Rate = current_app.extensions["pelago_rates"][rate_name]
    verdict = current_app.extensions["pelago_limiter"].hit(f"{rate_name}:{key}", rate)
    if not verdict.allowed:
        raise RateLimited(
            f"too many requests: at most {rate.limit} per {rate.seconds} s; retry after {verdict.retry_after} s",
            retry_after=verdict.retry_after,
        )
