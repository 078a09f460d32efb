"""Secrets encrypted at rest: channel signing secrets and plugins' secret settings.

A database dump or backup must not hand out the keys that sign tenants'
webhooks or their SMS gateways' credentials, so these values are stored as
Fernet tokens (AES-128-CBC + HMAC-SHA256), prefixed ``enc:v1:``. The keys
come from the environment:

* ``PELAGO_SECRET_KEYS``: comma-separated Fernet keys (``pelago secrets
  new-key`` makes one). The first encrypts; every one decrypts. Rotation:
  put a new key first, keep the old ones after it, run ``pelago secrets
  rotate`` (re-encrypts everything with the first key), then drop the old keys.
* Unset, the embedded mode (SQLite) keeps a key in ``$PELAGO_INSTANCE_DIR/secret.key``
  (made on first use, mode 0600) beside the SQLite file. On PostgreSQL
  (production) that fallback is refused (:func:`refuse_key_file`): every
  process must have ``PELAGO_SECRET_KEYS``.

A value without the prefix is one stored before encryption: it is read as
it is, and ``pelago secrets rotate`` encrypts it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

PREFIX = "enc:v1:"
KEYS_ENV = "PELAGO_SECRET_KEYS"

_lock = threading.Lock()
_cache: tuple[str, MultiFernet, Fernet] | None = None


class SecretKeyError(RuntimeError):
    """No usable key, or a value no configured key can decrypt (a key was dropped too early)."""


def new_key() -> str:
    """A fresh key for ``PELAGO_SECRET_KEYS``."""
    return Fernet.generate_key().decode()


_key_file_refused: str | None = None


def refuse_key_file(why: str) -> None:
    """Refuse the key file fallback in this process from now on (``make_engine`` does for PostgreSQL).

    A key file is right for the embedded demo (one process, its SQLite file
    beside it) and wrong for production: each host would make its own key,
    and a process with another key cannot read what the others encrypted.
    So on PostgreSQL a missing ``PELAGO_SECRET_KEYS`` is an error, not a new key.
    """
    global _key_file_refused
    _key_file_refused = why


def _configured() -> str:
    keys = os.environ.get(KEYS_ENV, "").strip()
    if keys:
        return keys
    if _key_file_refused is not None:
        raise SecretKeyError(
            f"{KEYS_ENV} is not set: {_key_file_refused} needs the same keys on every process, from the "
            f"environment (`pelago secrets new-key` makes one; see docs/operations.md, 'Secrets at rest'). "
            "The key file in the instance folder is only for the embedded SQLite demo."
        )
    path = Path(os.environ.get("PELAGO_INSTANCE_DIR", "instance")).resolve() / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_key())
    return path.read_text().strip()


def _keyring() -> tuple[MultiFernet, Fernet]:
    """The keyring and its first key, rebuilt when the configured keys change (a test, a reload)."""
    global _cache
    raw = _configured()
    with _lock:
        if _cache is None or _cache[0] != raw:
            try:
                fernets = [Fernet(k.strip().encode()) for k in raw.split(",") if k.strip()]
            except ValueError as exc:
                raise SecretKeyError(f"{KEYS_ENV} holds a malformed key: {exc}") from None
            if not fernets:
                raise SecretKeyError(f"{KEYS_ENV} holds no key")
            _cache = (raw, MultiFernet(fernets), fernets[0])
        return _cache[1], _cache[2]


def _fernet() -> MultiFernet:
    return _keyring()[0]


def encrypt(value: str) -> str:
    """``value`` as stored: ``enc:v1:<token>`` under the first key."""
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    """The clear value of a stored one; a legacy clear value is returned as it is."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _fernet().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise SecretKeyError(
            f"a stored secret cannot be decrypted with the keys in {KEYS_ENV}: was the key that "
            "encrypted it dropped before `pelago secrets rotate` ran?"
        ) from None


def rotated(stored: str) -> str | None:
    """``stored`` re-encrypted under the first key, or ``None`` if it already is."""
    clear = decrypt(stored)
    if stored.startswith(PREFIX):
        first = _keyring()[1]  # which key encrypted it
        try:
            first.decrypt(stored[len(PREFIX):].encode())
            return None
        except InvalidToken:
            pass
    return encrypt(clear)


def is_encrypted(stored: Any) -> bool:
    return isinstance(stored, str) and stored.startswith(PREFIX)


def encrypted_columns(metadata: Any = None) -> list[Any]:
    """Every :class:`EncryptedString` column of the core's and the loaded plugins' tables.

    Found in the models' metadata (one ``Base`` for the core and every
    plugin), so a plugin's secret column is rotated without the core naming it.
    """
    if metadata is None:
        from .db import Base

        metadata = Base.metadata
    return [column for table in metadata.sorted_tables for column in table.columns
            if isinstance(column.type, EncryptedString)]


def rotate_stored(session: Any, host: Any) -> dict[str, Any]:
    """Re-encrypt every stored secret under the first key, in ``session`` (the caller commits).

    Every ``EncryptedString`` column of the core and of the installed
    plugins (channel secrets, the conversions plugin's account secrets, …),
    of every tenant, and plugins' secret settings; values already under the
    first key are left alone. Returns what changed: ``channels`` (the core's
    channel secrets), ``settings`` (plugin settings rows) and ``columns``
    (``"table.column"`` → rows re-encrypted, for every encrypted column).
    """
    from sqlalchemy import inspect, select, type_coerce, update

    from . import models  # noqa: F401 - the core's tables in the metadata
    from .models import TenantPlugin

    present = set(inspect(session.connection()).get_table_names())
    columns: dict[str, int] = {}
    for column in encrypted_columns():
        table = column.table
        if table.name not in present:
            continue  # a plugin installed whose migrations have not run
        key = list(table.primary_key.columns)
        raw = type_coerce(column, Text)  # the stored token, not the clear value
        changed = 0
        for row in session.execute(select(*key, raw.label("stored")).where(column.is_not(None))).all():
            stored = row.stored
            new = rotated(stored) if stored else None
            if new is not None:
                session.execute(
                    update(table).where(*(c == row._mapping[c.name] for c in key))
                    .values({column.name: type_coerce(new, Text)})
                )
                changed += 1
        columns[f"{table.name}.{column.name}"] = changed
    settings = 0
    rows = session.scalars(select(TenantPlugin).execution_options(all_tenants=True)).all()
    for row in rows:
        spec = host.specs.get(row.plugin)
        if spec is None or not row.settings:
            continue
        changed_settings = dict(row.settings)
        for name in spec.secret_fields():
            value = changed_settings.get(name)
            if isinstance(value, str) and value:
                new = rotated(value)
                if new is not None:
                    changed_settings[name] = new
        if changed_settings != row.settings:
            row.settings = changed_settings
            settings += 1
    session.flush()
    return {"channels": columns.get("core_channel.secret", 0), "settings": settings, "columns": columns}


class EncryptedString(TypeDecorator[str]):
    """A text column whose values are encrypted at rest; Python sees the clear value.

    Not searchable and not comparable in SQL (every token differs). Empty
    strings are stored as they are.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None or value == "" or is_encrypted(value):
            return value
        return encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)
