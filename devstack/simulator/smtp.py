"""An SMTP server in the simulator (aiosmtpd, on `--smtp-port`, in the simulator's event loop).

It requires AUTH (PLAIN or LOGIN) with the simulated credentials — over cleartext, which a real
server would refuse — records every accepted message for `/_sim/messages?to=<email>`, and obeys the
`smtp` behavior: `http_500` → 451, `throttle` → 450, `invalid_number` → 550 user unknown, `timeout`
→ takes the message and answers after 30 s.
"""

from __future__ import annotations

import asyncio
import email.policy
import hmac
import logging
import warnings
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from devstack.simulator.common import HOST_KEY, SMTP_PORT_KEY, STATE_KEY, simulate_with
from devstack.simulator.state import Record, SimulatorState

PROVIDER = "smtp"
HOSTNAME = "smtp.simulator.localhost"

logger = logging.getLogger(__name__)
# aiosmtpd logs every SMTP command at INFO, and on every login a WARNING about its own internals
# (Session.login_data); the simulator's log is for what goes wrong.
logging.getLogger("mail.log").setLevel(logging.ERROR)
# AUTH over cleartext is deliberate here (a local test server without certificates).
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body((subtype,))
    # Recorded with the wire's CRLF line ends turned back into "\n", as the sender wrote them.
    return str(body.get_content()).replace("\r\n", "\n") if body is not None else ""


def _our_id(message_id: str) -> str | None:
    """Our message id from a Message-ID of the form <our id@domain> (what the SMTP adapter sets)."""
    local = message_id.strip().removeprefix("<").partition("@")[0]
    return local or None


class Handler:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        message_id = str(parsed.get("Message-ID") or "")
        request = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(parsed.get("Subject") or ""),
            "text": _part(parsed, "plain"),
            "html": _part(parsed, "html"),
            "message_id": message_id,
        }

        def accept() -> str:
            for recipient in envelope.rcpt_tos:
                self.state.record(Record(PROVIDER, recipient, _our_id(message_id), request, provider_message_id=message_id))
            return "250 2.0.0 Ok: queued"

        def fail(kind: str) -> str:
            if kind == "throttle":
                return "450 4.7.1 Too many messages, slow down"
            if kind == "invalid_number":
                return "550 5.1.1 Recipient address rejected: User unknown"
            return "451 4.3.0 Temporary server failure, try again later"

        return await simulate_with(self.state, PROVIDER, accept=accept, fail=fail)


def authenticator(state: SimulatorState) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        credentials = state.credentials[PROVIDER]
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        valid = auth_data.login.decode() == credentials["username"] and hmac.compare_digest(
            auth_data.password, credentials["password"].encode()
        )
        return AuthResult(success=valid, handled=False)

    return check


async def smtp_server(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the SMTP server runs while the app runs."""
    state = app[STATE_KEY]
    handler = Handler(state)
    check = authenticator(state)

    def protocol() -> SMTP:
        return SMTP(handler, hostname=HOSTNAME, authenticator=check, auth_required=True, auth_require_tls=False)

    try:
        server = await asyncio.get_running_loop().create_server(protocol, app[HOST_KEY], app[SMTP_PORT_KEY])
    except OSError as error:
        # The HTTP providers stay usable; only SMTP is missing (the log says why).
        logger.error("the SMTP server cannot listen on %s:%s: %s", app[HOST_KEY], app[SMTP_PORT_KEY], error)
        yield
        return
    yield
    server.close()
