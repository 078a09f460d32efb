"""Configuration, from the environment only. Every variable is listed here.

| variable | default | meaning |
|---|---|---|
| ``DATABASE_URL`` | ``sqlite:///<instance>/pelago.db`` | SQLAlchemy URL; ``postgresql://`` in production |
| ``REDIS_URL`` | unset | rq's Redis; unset runs jobs inline after commit |
| ``PELAGO_PLUGINS`` | all installed | ordered, comma separated deployment allow-list |
| ``PELAGO_STRICT_PLUGINS`` | ``0`` | ``1`` makes a plugin that fails to import fatal |
| ``PELAGO_INSTANCE_DIR`` | ``./instance`` | where the SQLite file lives |
| ``PELAGO_SCHEDULER_INTERVAL`` | ``15`` | seconds between periodic ticks in the embedded server |
| ``PELAGO_EMBEDDED_SCHEDULER`` | ``1`` | run periodic jobs on a thread of ``pelago serve`` when no Redis |
| ``PELAGO_MAX_CONTENT_LENGTH`` | ``1048576`` | largest request body accepted, in bytes |
| ``PELAGO_INTAKE_RATE_CHANNEL`` | ``3000/60`` | signed webhook submissions a channel may send per window (COUNT/SECONDS; 0: off) |
| ``PELAGO_INTAKE_RATE_ADDRESS`` | ``600/60`` | webhook requests one client address may send per window, signed or not |
| ``PELAGO_PROXY_COUNT`` | ``0`` | reverse proxies in front whose ``X-Forwarded-For`` is trusted for the client address |
| ``PELAGO_SQLITE_WRITE_WAIT`` | ``15`` | seconds a request queues for SQLite's write lock before a 503 |
| ``PELAGO_SECRET_KEYS`` | key file | comma-separated Fernet keys encrypting secrets at rest (``pelago.core.crypto``); unset: ``$PELAGO_INSTANCE_DIR/secret.key`` (SQLite only; required on PostgreSQL) |
| ``PELAGO_RETENTION_DAYS`` | ``30`` | days processed webhook submissions and sent outbound posts are kept (0: forever) |
| ``PELAGO_RETENTION_FAILED_DAYS`` | ``90`` | days failed webhook submissions and outbound posts are kept (0: forever) |
| ``PELAGO_OUTBOUND_ALLOW_PRIVATE`` | ``0`` | ``1`` lets webhooks and gateways call loopback and private addresses (read by ``pelago.core.outbound``) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _days(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number of days, 0 or more; a typo must not delete everything, so it stops the start."""
    raw = env.get(name, str(default)).strip()
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number of days (0: keep forever), not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None = None
    plugins: tuple[str, ...] | None = None
    strict_plugins: bool = False
    scheduler_interval: float = 15.0
    embedded_scheduler: bool = True
    max_content_length: int = 1024 * 1024
    sqlite_write_wait: float = 15.0
    intake_rate_channel: str = "3000/60"
    intake_rate_address: str = "600/60"
    proxy_count: int = 0
    console_session_hours: float = 12.0
    console_signin_rate: str = "5/300"
    retention_days: int = 30
    retention_failed_days: int = 90

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        instance = Path(env.get("PELAGO_INSTANCE_DIR", "instance")).resolve()
        url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'pelago.db'}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        plugins_raw = env.get("PELAGO_PLUGINS")
        plugins = None
        if plugins_raw is not None:
            plugins = tuple(p.strip() for p in plugins_raw.split(",") if p.strip())
        return cls(
            database_url=url,
            redis_url=env.get("REDIS_URL") or None,
            plugins=plugins,
            strict_plugins=_truthy(env.get("PELAGO_STRICT_PLUGINS")),
            scheduler_interval=float(env.get("PELAGO_SCHEDULER_INTERVAL", "15")),
            embedded_scheduler=_truthy(env.get("PELAGO_EMBEDDED_SCHEDULER", "1")),
            max_content_length=int(env.get("PELAGO_MAX_CONTENT_LENGTH", str(1024 * 1024))),
            sqlite_write_wait=float(env.get("PELAGO_SQLITE_WRITE_WAIT", "15")),
            intake_rate_channel=env.get("PELAGO_INTAKE_RATE_CHANNEL", "3000/60"),
            intake_rate_address=env.get("PELAGO_INTAKE_RATE_ADDRESS", "600/60"),
            proxy_count=int(env.get("PELAGO_PROXY_COUNT", "0")),
            console_session_hours=float(env.get("PELAGO_CONSOLE_SESSION_HOURS", "12")),
            console_signin_rate=env.get("PELAGO_CONSOLE_SIGNIN_RATE", "5/300"),
            retention_days=_days(env, "PELAGO_RETENTION_DAYS", 30),
            retention_failed_days=_days(env, "PELAGO_RETENTION_FAILED_DAYS", 90),
        )
