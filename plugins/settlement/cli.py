"""``pelago settlement …``: the plugin's commands (period locking lands with the money side)."""

from __future__ import annotations

import click


@click.group("settlement")
def commands() -> None:
    """Branches and settlement."""
