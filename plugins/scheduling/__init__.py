"""Plugin `scheduling`: K12 course scheduling (排课), attendance and class hours.

Courses, classes, recurring lessons, conflict checks and class-hour ledgers
land with the scheduling issue; the package is already a loadable entry point.
"""

from pelago.plugin import PluginSpec

plugin = PluginSpec(
    name="scheduling",
    title="Course scheduling (排课)",
    description="Classes, recurring lessons, attendance and class-hour consumption.",
    version="0.1.0",
    core=">=0.1,<0.2",
)
