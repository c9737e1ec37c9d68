"""Enterprise WeChat (WeCom) application messages.

References: developer.work.weixin.qq.com "Get access_token" (`GET /cgi-bin/gettoken`), "Send
application message" (`POST /cgi-bin/message/send`: text and textcard, `touser` joined by "|", up
to 1,000 users, the `invaliduser` answer), and "Global error codes".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from apps.dispatch.providers.base import (
    THROTTLE,
    OutboundMessage,
    ProviderAdapter,
    ProviderError,
    Receipt,
    SendResult,
    send_grouped,
)
from apps.dispatch.providers.http import HttpResponse, invalid_timeouts, invalid_url, raise_for_response, timeouts_from
from apps.dispatch.providers.tokens import IssuedToken, SharedToken, call_with_token
from apps.dispatch.providers.wechat import errcode

DEFAULT_ENDPOINT = "https://qyapi.weixin.qq.com"
INVALID_USER = "invalid_user"
MAX_USERS_PER_CALL = 1000
TOKEN_REJECTED = {40014, 42001}
PERMANENT_CODES = {
    40001,  # from /cgi-bin/gettoken: the secret is wrong
    40003,  # invalid userid
    40013,  # invalid corpid
    40056,  # invalid agentid
    60020,  # this server's IP is not on the app's allow list
    81013,  # every user, party and tag of the message is invalid
    82001,  # the app may not message these users
}
THROTTLE_CODES = {45009, 45033, 45047}


def error_for(code: int, detail: str) -> ProviderError:
    if code in THROTTLE_CODES:
        return ProviderError(THROTTLE, f"{code}: {detail}", permanent=False)
    if code == 81013:
        return ProviderError(INVALID_USER, f"{code}: {detail}", permanent=True)
    return ProviderError(str(code), detail, permanent=code in PERMANENT_CODES)


def _error_reply(response: HttpResponse) -> ProviderError | None:
    code = errcode(response)
    return error_for(code, str(response.json().get("errmsg") or "")) if code else None


class WecomMessage(ProviderAdapter):
    """Settings: corpid, corpsecret (the application's secret), agentid, endpoint (default
    https://qyapi.weixin.qq.com), url (default link of a textcard), timeouts.

    Free text: `content` as a text message, or a textcard (title, description, link) when the message
    has a `title` and a link (params["url"] or the `url` setting). `send_batch` sends messages with
    the same content in one call (`touser` = "a|b|c") and maps the answer's `invaliduser` back to
    each message (a permanent `invalid_user`). WeCom answers one msgid per call, so the provider id
    of a message is "<msgid>:<userid>". WeCom sends no delivery reports for application messages.
    """

    kind = "wecom"
    default_endpoint = DEFAULT_ENDPOINT
    channel = "wecom"
    template_based = False
    max_batch = MAX_USERS_PER_CALL
    sends_batches = True

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("corpid", "corpsecret") if not settings.get(name)]
        if not str(settings.get("agentid", "")).isdigit():
            invalid.append("agentid")
        for name in ("endpoint", "url"):
            if settings.get(name) and invalid_url(settings[name]):
                invalid.append(name)
        return invalid + invalid_timeouts(settings)

    def shared_token(self) -> SharedToken:
        # A WeCom token belongs to one application of one company: key it by both.
        key = f"wecom:{self.settings['corpid']}:{self.settings.get('agentid', '')}"
        return SharedToken(key, self._fetch_token, wait_s=sum(timeouts_from(self.settings)) + 1)

    def _fetch_token(self) -> IssuedToken:
        query = urlencode({"corpid": self.settings["corpid"], "corpsecret": self.settings["corpsecret"]})
        response = self.http.request("GET", f"{self.endpoint}/cgi-bin/gettoken?{query}")
        raise_for_response(response, _error_reply)
        return IssuedToken.from_answer(response)

    def send(self, message: OutboundMessage) -> SendResult:
        [outcome] = self.send_batch([message])
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        return send_grouped(messages, self._content, MAX_USERS_PER_CALL, self._send_group)

    def _content(self, message: OutboundMessage) -> bytes:
        """The message body without `touser`: messages with equal bodies share one call."""
        url = message.params.get("url") or self.settings.get("url")
        body: dict[str, Any] = {"msgtype": "text", "agentid": int(self.settings["agentid"])}
        if message.title and url:
            body["msgtype"] = "textcard"
            body["textcard"] = {"title": message.title, "description": message.content, "url": url}
        else:
            body["text"] = {"content": f"{message.title}\n{message.content}" if message.title else message.content}
        return json.dumps(body, ensure_ascii=False, sort_keys=True).encode()

    def _send_group(self, messages: list[OutboundMessage]) -> list[SendResult | ProviderError]:
        body = json.loads(self._content(messages[0])) | {"touser": "|".join(message.to for message in messages)}
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

        def post(access_token: str) -> HttpResponse:
            return self.http.request(
                "POST",
                f"{self.endpoint}/cgi-bin/message/send?{urlencode({'access_token': access_token})}",
                headers={"Content-Type": "application/json; charset=utf-8"},
                body=payload,
            )

        try:
            response = call_with_token(self.shared_token(), post, lambda r: errcode(r) in TOKEN_REJECTED)
            raise_for_response(response, _error_reply)
            answer = response.json()
            if not isinstance(answer, dict) or not answer.get("msgid"):
                raise ProviderError("bad_response", f"HTTP {response.status}: no msgid", permanent=False, ambiguous=True)
        except ProviderError as error:
            return [error] * len(messages)
        invalid = set(str(answer.get("invaliduser") or "").split("|")) - {""}
        msgid = str(answer["msgid"])
        return [
            ProviderError(INVALID_USER, f"WeCom reports {message.to!r} as an invalid user", permanent=True)
            if message.to in invalid
            else SendResult(f"{msgid}:{message.to}", {"msgid": msgid, "touser": message.to})
            for message in messages
        ]

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        # WeCom pushes no delivery reports for application messages: nothing genuine ever arrives.
        return False

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        return []
