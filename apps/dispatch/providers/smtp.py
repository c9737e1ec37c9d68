"""E-mail over SMTP, on Django's mail machinery (`EmailMultiAlternatives` over an SMTP `EmailBackend`).

Reply codes per RFC 5321 §4.2: 4yz is a transient failure (try again later), 5yz a permanent one
(550 mailbox unavailable, 553 bad address, 535 authentication failed).
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Mapping, Sequence
from email.utils import parseaddr

from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend
from django.utils.html import linebreaks

from apps.dispatch.providers.base import OutboundMessage, ProviderAdapter, ProviderError, Receipt, SendResult

DEFAULT_TIMEOUT_S = 10.0
BOOLEAN = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}


def _flag(settings: Mapping[str, str], name: str) -> bool:
    return BOOLEAN.get(str(settings.get(name, "")).lower(), False)


def message_id_header(message_id: str, from_email: str) -> str:
    """Our id in the Message-ID, so a bounce or a reply can be traced back to the message."""
    domain = parseaddr(from_email)[1].rpartition("@")[2] or "localhost"
    return f"<{message_id}@{domain}>"


def _close(backend: EmailBackend) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        backend.close()
    backend.connection = None


def error_for(error: Exception) -> ProviderError:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (0, b""))
        return _reply_error(code, reply)
    if isinstance(error, smtplib.SMTPResponseException):
        return _reply_error(error.smtp_code, error.smtp_error)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return ProviderError("connection_reset", str(error), permanent=False, ambiguous=True)
    if isinstance(error, TimeoutError):
        return ProviderError("timeout", str(error) or "the SMTP server did not answer", permanent=False, ambiguous=True)
    return ProviderError("connect_error", repr(error), permanent=False)


def _reply_error(code: int, reply: bytes | str) -> ProviderError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return ProviderError(f"smtp_{code}", text, permanent=code >= 500)


class SmtpEmail(ProviderAdapter):
    """Settings: host, port (default 25; 465 with use_ssl, 587 with use_tls), username, password,
    use_tls (STARTTLS), use_ssl (implicit TLS), from_email, timeout (seconds, default 10).

    Subject = `title`; the text part is `content`, the HTML alternative `html` (the template's escaped
    HTML rendering) or else `content` escaped with line breaks. The Message-ID is
    `<our message id@from domain>` and is the provider id. `send_batch` reuses one SMTP session.
    SMTP has no delivery-report webhook (bounces arrive as mail).
    """

    kind = "smtp"
    channel = "email"
    template_based = False
    common_settings = ("timeout",)

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str]) -> list[str]:
        invalid = [name for name in ("host", "from_email") if not settings.get(name)]
        if settings.get("from_email") and "@" not in parseaddr(settings["from_email"])[1]:
            invalid.append("from_email")
        if settings.get("username") and not settings.get("password"):
            invalid.append("password")
        if settings.get("port") and not str(settings["port"]).isdigit():
            invalid.append("port")
        for name in ("use_tls", "use_ssl"):
            if str(settings.get(name, "")).lower() not in BOOLEAN:
                invalid.append(name)
        if _flag(settings, "use_tls") and _flag(settings, "use_ssl"):
            invalid.append("use_ssl")
        try:
            if float(settings.get("timeout") or DEFAULT_TIMEOUT_S) <= 0:
                invalid.append("timeout")
        except ValueError:
            invalid.append("timeout")
        return invalid

    def backend(self) -> EmailBackend:
        use_ssl, use_tls = _flag(self.settings, "use_ssl"), _flag(self.settings, "use_tls")
        default_port = 465 if use_ssl else 587 if use_tls else 25
        return EmailBackend(
            host=self.settings["host"],
            port=int(self.settings.get("port") or default_port),
            username=self.settings.get("username") or "",
            password=self.settings.get("password") or "",
            use_tls=use_tls,
            use_ssl=use_ssl,
            timeout=float(self.settings.get("timeout") or DEFAULT_TIMEOUT_S),
            fail_silently=False,
        )

    def email(self, message: OutboundMessage) -> EmailMultiAlternatives:
        from_email = self.settings["from_email"]
        email = EmailMultiAlternatives(
            subject=message.title,
            body=message.content,
            from_email=from_email,
            to=[message.to],
            headers={"Message-ID": message_id_header(message.message_id, from_email)},
        )
        email.attach_alternative(message.html or linebreaks(message.content, autoescape=True), "text/html")
        return email

    def send(self, message: OutboundMessage) -> SendResult:
        [outcome] = self.send_batch([message])
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        backend = self.backend()
        results: list[SendResult | ProviderError] = []
        try:
            for message in messages:
                email = self.email(message)
                try:
                    backend.send_messages([email])
                except (smtplib.SMTPException, OSError) as error:
                    results.append(error_for(error))
                    # The session may be broken or half open (a failed login): the next message opens a new one.
                    _close(backend)
                    continue
                message_id = email.extra_headers["Message-ID"]
                results.append(SendResult(message_id, {"message_id": message_id}))
        finally:
            _close(backend)
        return results

    def verify_receipt_signature(self, *, method: str, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        return False

    def parse_receipt(self, *, headers: Mapping[str, str], body: bytes) -> list[Receipt]:
        return []
