"""The settlement plugin's hook implementations.

Division (this section): ``choose_team`` divides new leads between branches
by the tenant's distribution policies (:mod:`.division`), and ``lead_created``
links each allocation to the lead it made.
"""

from __future__ import annotations
