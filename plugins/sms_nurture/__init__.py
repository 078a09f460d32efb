"""Plugin `sms_nurture`: automatic SMS nurturing of leads telesales could not convert.

Sequences, templates, quiet hours, caps, opt-out and exactly-once sending land
with the sms_nurture issue; the package is already a loadable entry point.
"""

from pelago.plugin import PluginSpec

plugin = PluginSpec(
    name="sms_nurture",
    title="SMS nurturing",
    description="Automatic SMS sequences for unconverted leads, with quiet hours and opt-out.",
    version="0.1.0",
    core=">=0.1,<0.2",
)
