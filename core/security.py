"""Credentials: random API keys stored as hashes, passwords with a slow hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "pk"


def new_api_key() -> tuple[str, str, str]:
    """A fresh key: ``(key, prefix, sha256)``. Only the prefix and hash are stored.

    A 256-bit random secret needs no slow hash: it cannot be guessed, only
    stolen, and the hash makes a stolen table useless.
    """
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = f"{KEY_PREFIX}_{prefix}_{secret}"
    return key, prefix, hash_secret(key)


def hash_secret(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> str | None:
    """The lookup prefix of a presented key, or ``None`` if it has the wrong shape."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12:
        return None
    if not all(c in "0123456789abcdef" for c in parts[1]):
        return None  # never send a character the database cannot store to a lookup
    return parts[1]


def key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(key), stored_hash)


def hash_password(password: str, *, iterations: int = 240_000) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        algo, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2_sha256":
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(candidate.hex(), digest)
