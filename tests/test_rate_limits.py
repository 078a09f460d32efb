"""Rate limits on the channel webhooks: per client address and per channel, 429 with Retry-After (issue 14)."""

from __future__ import annotations

import uuid

import pytest

from pelago.core.ratelimit import MemoryLimiter, Rate, RedisLimiter
from pelago.hostapp import Settings

from .test_channels import post_signed


def limit(app, **rates: Rate) -> None:
    app.extensions["pelago_rates"].update(rates)


def test_one_address_is_limited_signed_or_not_and_the_window_passes(tenant, clock):
    limit(tenant.app, intake_address=Rate(3, 60))
    channel = tenant.post("/api/v1/channels", json={"name": "douyin"}).get_json()
    client = tenant.app.test_client()
    statuses = [client.post(f"/api/v1/intake/{channel['key']}", data=b"{}",
                            headers={"Content-Type": "application/json"}).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]  # unsigned, but counted: guessing signatures costs the guesser
    r = post_signed(tenant, channel["key"], channel["secret"], {"name": "A", "phone": "13800138701"})
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert "too many requests" in r.get_json()["message"]
    clock.advance(seconds=60)
    r = post_signed(tenant, channel["key"], channel["secret"], {"name": "A", "phone": "13800138701"})
    assert r.status_code == 202
    # Another address has its own count.
    r = tenant.app.test_client().post(f"/api/v1/intake/{channel['key']}", data=b"{}",
                                      environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert r.status_code == 401


def test_a_channel_is_limited_on_signed_submissions_only(tenant, clock):
    limit(tenant.app, intake_channel=Rate(2, 60))
    channel = tenant.post("/api/v1/channels", json={"name": "baidu"}).get_json()
    other = tenant.post("/api/v1/channels", json={"name": "kuaishou"}).get_json()
    client = tenant.app.test_client()
    for _ in range(5):  # an attacker knowing the public key cannot spend the channel's allowance
        assert client.post(f"/api/v1/intake/{channel['key']}", data=b"{}",
                           headers={"X-Pelago-Signature": "sha256=" + "0" * 64}).status_code == 401
    got = [post_signed(tenant, channel["key"], channel["secret"], {"phone": f"1380013880{i}"}).status_code
           for i in range(3)]
    assert got == [202, 202, 429]
    assert post_signed(tenant, other["key"], other["secret"], {"phone": "13800138809"}).status_code == 202
    with tenant.runtime.sessions() as s:  # the refused submission wrote nothing
        from sqlalchemy import func, select

        from pelago.core.models import Lead

        assert s.scalar(select(func.count()).select_from(Lead).where(Lead.phone == "+8613800138802")) == 0


def test_redis_counts_are_shared_between_processes(redis_url, clock):
    """Two app processes (two limiters on one Redis) share one allowance."""
    from redis import Redis

    prefix = f"pelago-test-rl-{uuid.uuid4().hex[:8]}"
    first = RedisLimiter(Redis.from_url(redis_url), clock, prefix=prefix)
    second = RedisLimiter(Redis.from_url(redis_url), clock, prefix=prefix)
    rate = Rate(3, 60)
    verdicts = [first.hit("k", rate), second.hit("k", rate), first.hit("k", rate), second.hit("k", rate)]
    assert [v.allowed for v in verdicts] == [True, True, True, False] and verdicts[-1].retry_after >= 1
    clock.advance(seconds=60)
    assert second.hit("k", rate).allowed


def test_redis_down_lets_requests_through(clock):
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = RedisLimiter(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)),
                        clock)
    assert dead.hit("k", Rate(1, 60)).allowed and dead.hit("k", Rate(1, 60)).allowed


def test_rates_parse_and_zero_is_off(clock):
    assert Rate.parse("600/60") == Rate(600, 60) and Rate.parse("5") == Rate(5, 60)
    off = Rate.parse("0")
    limiter = MemoryLimiter(clock)
    assert all(limiter.hit("k", off).allowed for _ in range(1000))
    for bad in ("-1/60", "5/0", "x/60"):
        with pytest.raises(ValueError):
            Rate.parse(bad)
    env = Settings.from_env({"PELAGO_INTAKE_RATE_CHANNEL": "10/1", "PELAGO_PROXY_COUNT": "1"})
    assert (env.intake_rate_channel, env.proxy_count) == ("10/1", 1)


def test_memory_limiter_forgets_ended_windows_without_a_pass_over_every_key(clock):
    """Expiry drops whole windows: its work is bounded by the counts ever made, never keys x hits."""
    limiter = MemoryLimiter(clock)
    minute = Rate(5, 60)
    for i in range(3000):
        assert limiter.hit(f"address-{i}", minute).allowed
    assert limiter.size == 3000 and limiter.dropped == 0
    # Many hits within the window never look at the other keys (nothing is dropped twice).
    for _ in range(2000):
        limiter.hit("address-1", minute)
    assert limiter.dropped == 0 and limiter.size == 3000
    clock.advance(seconds=60)
    assert limiter.hit("address-1", minute).allowed  # a new window: the counts start again
    assert limiter.size == 1 and limiter.dropped == 3000
    # A rate of another length keeps its own windows.
    hour = Rate(1, 3600)
    assert limiter.hit("signin", hour).allowed and not limiter.hit("signin", hour).allowed
    clock.advance(seconds=60)
    limiter.hit("address-2", minute)
    assert not limiter.hit("signin", hour).allowed and limiter.size == 2
    assert limiter.dropped == 3001
