"""The tenant's Aliyun account: keys, signature name, endpoint, and the token of the push callbacks."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from pelago.plugin import OutboundURL


class Settings(Schema):
    access_key_id = fields.String(load_default="", validate=validate.Length(max=100))
    access_key_secret = fields.String(load_default="", validate=validate.Length(max=200), metadata={"secret": True})
    sign_name = fields.String(load_default="", validate=validate.Length(max=30),
                              metadata={"description": "the approved signature (SignName), e.g. 阿里云短信测试"})
    region_id = fields.String(load_default="cn-hangzhou", validate=validate.Regexp(r"^[a-z0-9-]{2,40}$"))
    endpoint = OutboundURL(load_default="https://dysmsapi.aliyuncs.com/")
    callback_token = fields.String(load_default="", validate=validate.Length(max=200), metadata={"secret": True,
                                   "description": "Aliyun's pushes are unsigned: configure the callback URL with ?token=<this>"})
