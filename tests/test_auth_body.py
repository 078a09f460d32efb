"""The credential's transaction and the request body: a body still on the wire is read after a commit.

On PostgreSQL a small body is read right after the credential and the one
transaction goes on; a large one (an upload) must not keep a pooled
connection and its locks while the client sends it. SQLite always commits.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from pelago.core.db import TenantSession
from pelago.hostapp.auth import SMALL_BODY

from .conftest import TenantHandle


@pytest.fixture
def commits() -> Iterator[list[object]]:
    seen: list[object] = []

    def count(session: object) -> None:
        seen.append(session)

    event.listen(TenantSession, "after_commit", count)
    yield seen
    event.remove(TenantSession, "after_commit", count)


def _upload(tenant: TenantHandle, size: int) -> int:
    """An upload of ``size`` bytes with a bad delimiter (refused, so nothing else commits); the status."""
    body = {"file": (io.BytesIO(b"phone\n" + b"1" * size), "leads.csv"), "delimiter": "not one character"}
    return int(tenant.post("/api/v1/imports", data=body, content_type="multipart/form-data").status_code)


def test_a_large_body_is_read_after_the_credentials_commit(tenant: TenantHandle, commits: list[object]) -> None:
    postgres = tenant.runtime.engine.dialect.name == "postgresql"
    assert _upload(tenant, 1000) == 422
    assert len(commits) == (0 if postgres else 1)  # the one transaction, rolled back on the error
    commits.clear()
    assert _upload(tenant, SMALL_BODY + 1) == 422
    assert len(commits) == 1  # the credential's read, before the body
    commits.clear()
    fine = tenant.post("/api/v1/leads", json={"phone": "13900771234", "name": "small"})
    assert fine.status_code == 201, fine.get_json()
    assert fine.get_json()["name"] == "small"  # the body read early is the one the view parses
    assert len(commits) == (1 if postgres else 2)
