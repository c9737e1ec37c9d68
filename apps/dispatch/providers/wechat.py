"""WeChat official account template messages (模板消息), and the TEMPLATESENDJOBFINISH event.

References: developers.weixin.qq.com official account docs: "Get access token"
(`GET /cgi-bin/token`), "Template message interface" (`POST /cgi-bin/message/template/send`, the
TEMPLATESENDJOBFINISH event), "Global return codes", and "Message encryption and decryption"
(WXBizMsgCrypt: SHA1 signatures over the sorted strings, AES-256-CBC with PKCS#7 padded to 32 bytes,
plaintext = random(16) + msg_len(4, big endian) + msg + appid).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from apps.dispatch.providers.base import (
    THROTTLE,
    OutboundMessage,
    ProviderAdapter,
    ProviderError,
    Receipt,
    ReceiptFormatError,
    SendResult,
)
from apps.dispatch.providers.http import HttpResponse, invalid_timeouts, invalid_url, raise_for_response, timeouts_from
from apps.dispatch.providers.tokens import IssuedToken, SharedToken, call_with_token

DEFAULT_ENDPOINT = "https://api.weixin.qq.com"
# The access token is invalid (40001, 40014) or expired (42001): refresh it once and send again.
TOKEN_REJECTED = {40001, 40014, 42001}
PERMANENT_CODES = {
    40001,  # from /cgi-bin/token: the secret is wrong
    40003,  # invalid openid
    40013,  # invalid appid
    40037,  # invalid template_id
    40125,  # invalid appsecret
    41030,  # invalid page (miniprogram)
    43004,  # the user does not follow the account
    43019,  # the user blocked the account
    43101,  # the user refused (unsubscribed from) the message
    47003,  # template data does not match the template
}
THROTTLE_CODES = {45009, 45011, 45047}
FINAL_STATUSES = {"success": "delivered"}
AES_BLOCK = 32


def signature(*parts: str) -> str:
    """WeChat's SHA1 over the sorted, concatenated strings (plain `signature` and safe `msg_signature`)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # noqa: S324 — the provider's scheme


def _aes_key(encoding_aes_key: str) -> bytes:
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("an EncodingAESKey is 43 base64 characters of a 32-byte key")
    return key


def encrypt(message: bytes, *, encoding_aes_key: str, appid: str) -> str:
    """Safe mode's `Encrypt` value (what WeChat pushes; the simulator and tests use it)."""
    key = _aes_key(encoding_aes_key)
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + appid.encode()
    pad = AES_BLOCK - len(plain) % AES_BLOCK
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()


def decrypt(encrypted: str, *, encoding_aes_key: str, appid: str) -> bytes:
    """The message inside `Encrypt`; ReceiptFormatError when it is not for `appid` or not well formed."""
    try:
        key = _aes_key(encoding_aes_key)
        data = base64.b64decode(encrypted, validate=True)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
    except ValueError as error:
        raise ReceiptFormatError(f"cannot decrypt: {error}") from error
    pad = plain[-1] if plain else 0
    if not 1 <= pad <= AES_BLOCK or len(plain) < 20 + pad:
        raise ReceiptFormatError("bad padding")
    plain = plain[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    message, receiver = plain[20 : 20 + length], plain[20 + length :]
    if len(message) != length or receiver.decode("utf-8", "replace") != appid:
        raise ReceiptFormatError("the encrypted message is not for this appid")
    return message


def _parse_xml(body: bytes) -> dict[str, str]:
    """The child elements of a WeChat `<xml>` push; no DTD is accepted (no entity expansion attacks)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise ReceiptFormatError("a WeChat push has no DTD")
    try:
        root = ET.fromstring(body)  # noqa: S314 — DTDs refused above; expat does not fetch external entities
    except ET.ParseError as error:
        raise ReceiptFormatError(f"not XML: {error}") from error
    if root.tag != "xml":
        raise ReceiptFormatError("a WeChat push is an <xml> document")
    return {child.tag: (child.text or "") for child in root}


def error_for(code: int, detail: str) -> ProviderError:
    if code in THROTTLE_CODES:
        return ProviderError(THROTTLE, f"{code}: {detail}", permanent=False)
    # -1 (system busy) and anything unknown are worth another try.
    return ProviderError(str(code), detail, permanent=code in PERMANENT_CODES)


def errcode(response: HttpResponse) -> int:
    answer = response.json()
    code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
    return code if isinstance(code, int) else 0


def _error_reply(response: HttpResponse) -> ProviderError | None:
    """The Weixin APIs answer errors with HTTP 200 and a non-zero `errcode`."""
    code = errcode(response)
    if code == 0:
        return None
    answer = response.json()
    return error_for(code, str(answer.get("errmsg") or ""))


class WechatTemplate(ProviderAdapter):
    """Settings: appid, secret, endpoint (default https://api.weixin.qq.com), url (default link of a
    message when its params carry no `url`), field_map (optional JSON object renaming template
    variables to WeChat field names, e.g. {"order_no": "keyword1"}), and for receipts token (the
    server configuration's Token) and encoding_aes_key (safe mode), timeouts.

    `provider_template_id` is the WeChat template id; each template variable becomes the field of the
    same name (or its `field_map` name) as {"value": ...}. Our message id is sent as `client_msg_id`,
    which WeChat uses to drop duplicates for the same openid. The provider id is WeChat's `msgid`,
    which the TEMPLATESENDJOBFINISH event carries back as MsgID.
    """

    kind = "wechat"
    default_endpoint = DEFAULT_ENDPOINT
    channel = "wechat"
    template_based = True
    reports_delivery = True
    receipt_ack = (200, "text/plain", b"success")

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("appid", "secret") if not settings.get(name)]
        if "endpoint" in settings and invalid_url(settings["endpoint"]):
            invalid.append("endpoint")
        if settings.get("url") and invalid_url(settings["url"]):
            invalid.append("url")
        if settings.get("field_map") and _field_map(settings["field_map"]) is None:
            invalid.append("field_map")
        if settings.get("encoding_aes_key"):
            try:
                _aes_key(settings["encoding_aes_key"])
            except ValueError:
                invalid.append("encoding_aes_key")
        return invalid + invalid_timeouts(settings)

    def shared_token(self) -> SharedToken:
        return SharedToken(f"wechat:{self.settings['appid']}", self._fetch_token, wait_s=sum(timeouts_from(self.settings)) + 1)

    def _fetch_token(self) -> IssuedToken:
        query = urlencode({"grant_type": "client_credential", "appid": self.settings["appid"], "secret": self.settings["secret"]})
        response = self.http.request("GET", f"{self.endpoint}/cgi-bin/token?{query}")
        raise_for_response(response, _error_reply)
        return IssuedToken.from_answer(response)

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.provider_template_id:
            raise ProviderError("missing_template", "the template has no WeChat template id", permanent=True)
        field_map = _field_map(self.settings.get("field_map") or "{}") or {}
        names = message.variables or tuple(name for name in message.params if name != "url")
        request: dict[str, Any] = {
            "touser": message.to,
            "template_id": message.provider_template_id,
            "data": {field_map.get(name, name): {"value": str(message.params.get(name, ""))} for name in names},
            "client_msg_id": message.message_id,
        }
        url = message.params.get("url") or self.settings.get("url")
        if url:
            request["url"] = url
        body = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()

        def post(access_token: str) -> HttpResponse:
            return self.http.request(
                "POST",
                f"{self.endpoint}/cgi-bin/message/template/send?{urlencode({'access_token': access_token})}",
                headers={"Content-Type": "application/json; charset=utf-8"},
                body=body,
            )

        response = call_with_token(self.shared_token(), post, lambda r: errcode(r) in TOKEN_REJECTED)
        raise_for_response(response, _error_reply)
        answer = response.json()
        if not isinstance(answer, dict) or not answer.get("msgid"):
            raise ProviderError("bad_response", f"HTTP {response.status}: no msgid", permanent=False, ambiguous=True)
        return SendResult(str(answer["msgid"]), {"msgid": answer["msgid"]})

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        """Plain mode: `signature` over (token, timestamp, nonce); safe mode (`encrypt_type=aes`) also
        `msg_signature` over (token, timestamp, nonce, Encrypt), and the message must decrypt for our appid."""
        token = self.settings.get("token")
        query = dict(parse_qsl(urlsplit(url).query))
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        if not token or not timestamp or not nonce:
            return False
        if query.get("encrypt_type") != "aes":
            return hmac.compare_digest(signature(token, timestamp, nonce), query.get("signature", ""))
        try:
            encrypted = _parse_xml(body).get("Encrypt", "")
            expected = signature(token, timestamp, nonce, encrypted)
            if not encrypted or not hmac.compare_digest(expected, query.get("msg_signature", "")):
                return False
            self._decrypt(encrypted)
        except ReceiptFormatError:
            return False
        return True

    def _decrypt(self, encrypted: str) -> bytes:
        settings = self.settings
        return decrypt(encrypted, encoding_aes_key=settings.get("encoding_aes_key", ""), appid=settings.get("appid", ""))

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        fields = _parse_xml(body)
        if "Encrypt" in fields:
            fields = _parse_xml(self._decrypt(fields["Encrypt"]))
        if fields.get("MsgType") != "event" or fields.get("Event") != "TEMPLATESENDJOBFINISH":
            return []  # other events (subscribe, menu clicks…) are not delivery reports
        status, msg_id = fields.get("Status", ""), fields.get("MsgID") or fields.get("MsgId")
        if not status or not msg_id:
            raise ReceiptFormatError("TEMPLATESENDJOBFINISH has MsgID and Status")
        try:
            at = dt.datetime.fromtimestamp(int(fields.get("CreateTime", "")), dt.UTC)
        except ValueError as error:
            raise ReceiptFormatError(f"bad CreateTime: {error}") from error
        delivered = FINAL_STATUSES.get(status) == "delivered"
        return [
            Receipt(
                provider=self.kind,
                provider_message_id=msg_id,
                message_id=None,
                to=fields.get("FromUserName") or None,
                status="delivered" if delivered else "undelivered",
                code=status,
                detail=status.partition(":")[2].strip() if not delivered else "",
                at=at,
            )
        ]


def _field_map(raw: str) -> dict[str, str] | None:
    try:
        mapping = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        return None
    return mapping
