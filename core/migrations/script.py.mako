"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from collections.abc import Sequence

<%
    # A plugin's revision imports only pelago.plugin (for its column types), and only when used.
    lines = (imports or "").splitlines()
    ours = [line for line in lines if line.startswith("import pelago")]
    plugin = config.attributes.get("plugin")
%>\
import sqlalchemy as sa
from alembic import op
% for line in lines:
% if line not in ours:
${line}
% endif
% endfor
% if not plugin:

import pelago.core.db
% elif ours:

${"\n".join(ours)}
% endif

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
