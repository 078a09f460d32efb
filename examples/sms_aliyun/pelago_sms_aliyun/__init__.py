"""``sms_aliyun``: an SMS provider plugin for ``sms_nurture``, on Aliyun's SMS API (dysmsapi, 2017-05-25).

A provider is an ordinary plugin implementing ``sms_nurture``'s four hooks
(docs/plugins/sms_nurture.md "Writing a provider plugin"). This one answers for
``provider == "aliyun"``: ``SendSms`` with our id as ``OutId``, signed as the
API documents (signature version 1.0, HMAC-SHA1); ``QuerySendDetails`` to
reconcile; Aliyun's report and reply pushes, checked against a secret token.
"""

from pelago.plugin import PluginSpec

from . import hooks, schemas

plugin = PluginSpec(
    name="sms_aliyun",
    title="Aliyun SMS (example provider)",
    description="Sends sms_nurture's messages through Aliyun SendSms; reconciles with QuerySendDetails.",
    version="0.1.0",
    core=">=0.1,<0.2",
    requires=("sms_nurture",),
    settings=schemas.Settings,
    hooks=hooks,
    default_enabled=False,
)
