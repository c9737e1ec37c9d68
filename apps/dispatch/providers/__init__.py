"""Provider adapters by kind, imported lazily so that a broken or unused adapter costs nothing."""

from __future__ import annotations

import re
from importlib import import_module

from apps.dispatch.providers.base import ProviderAdapter

ADAPTERS = {
    "aliyun": "apps.dispatch.providers.aliyun.AliyunSms",
    "tencent": "apps.dispatch.providers.tencent.TencentSms",
    "volcengine": "apps.dispatch.providers.volcengine.VolcengineSms",
    "twilio": "apps.dispatch.providers.twilio.TwilioSms",
    "wechat": "apps.dispatch.providers.wechat.WechatTemplate",
    "wecom": "apps.dispatch.providers.wecom.WecomMessage",
    "fcm": "apps.dispatch.providers.fcm.FcmPush",
    "apns": "apps.dispatch.providers.apns.ApnsPush",
    "jpush": "apps.dispatch.providers.jpush.JPush",
    "smtp": "apps.dispatch.providers.smtp.SmtpEmail",
}


def template_id_format(kind: str) -> tuple[re.Pattern[str], str] | None:
    """The format of the approved template ids a provider kind issues (None: any, or not a kind)."""
    return adapter_class(kind).template_id_format if kind in ADAPTERS else None


def adapter_class(kind: str) -> type[ProviderAdapter]:
    """The adapter class for `kind`; KeyError for an unknown kind."""
    module_name, _, class_name = ADAPTERS[kind].rpartition(".")
    adapter: type[ProviderAdapter] = getattr(import_module(module_name), class_name)
    return adapter
