"""Channel secrets and plugins' secret settings encrypted at rest

``core_channel.secret`` becomes text (a Fernet token is longer than the
secret) and every stored secret is encrypted with the first key of
``PELAGO_SECRET_KEYS`` (or the embedded mode's key file): see
:mod:`pelago.core.crypto`. Plugins' secret settings (fields marked
``metadata={"secret": True}``) are encrypted when next saved, or at once by
``pelago secrets rotate``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from pelago.core import crypto

    with op.batch_alter_table("core_channel") as batch:
        batch.alter_column("secret", type_=sa.Text(), existing_type=sa.String(100), existing_nullable=False)
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, secret FROM core_channel")).all()
    for channel_id, secret in rows:
        if secret and not crypto.is_encrypted(secret):
            conn.execute(sa.text("UPDATE core_channel SET secret = :s WHERE id = :id"),
                         {"s": crypto.encrypt(secret), "id": channel_id})


def downgrade() -> None:
    from pelago.core import crypto

    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, secret FROM core_channel")).all()
    for channel_id, secret in rows:
        conn.execute(sa.text("UPDATE core_channel SET secret = :s WHERE id = :id"),
                     {"s": crypto.decrypt(secret), "id": channel_id})
    with op.batch_alter_table("core_channel") as batch:
        batch.alter_column("secret", type_=sa.String(100), existing_type=sa.Text(), existing_nullable=False)
