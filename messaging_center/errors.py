"""One error format for the whole API: `{"code", "detail", "errors"?}` (API.md, Conventions).

Domain code raises `ServiceError` subclasses with a stable `code`; DRF's exceptions, Django's 404
and anything unexpected are turned into the same body here. Never HTML, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A domain error the API reports as-is."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "validation_error"
    default_detail: str = "The request could not be processed."

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        errors: dict[str, list[str]] | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or (_summary(errors) if errors else self.default_detail)
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.errors = errors
        self.headers = headers or {}
        super().__init__(self.detail)


class ValidationFailed(ServiceError):
    code = "validation_error"
    default_detail = "The request is not valid."


class NotFound(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    default_detail = "Not found."


class Conflict(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Unavailable(ServiceError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"
    default_detail = "A dependency is down; the request was not accepted. Retry later."


class AccountDisabled(exceptions.APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "account_disabled"
    default_detail = "This account is disabled by an operator."


def error_body(code: str, detail: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested validation detail → {"field.sub": ["message", ...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix or "non_field_errors"
            for field, messages in _flatten(value, name).items():
                flat.setdefault(field, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            flat[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                for field, messages in _flatten(item, f"{prefix}[{index}]").items():
                    flat.setdefault(field, []).extend(messages)
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def _summary(errors: dict[str, list[str]]) -> str:
    field, messages = next(iter(errors.items()))
    more = len(errors) - 1
    tail = f" (and {more} more field{'s' if more > 1 else ''})" if more else ""
    return f"Invalid {field}: {messages[0]}{tail}"


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "validation_error",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


# The database cannot be reached (down, restarting, a connection it dropped): the request was not
# served and may be retried, which is what 503 says; it is not a bug to log with a traceback.
DATABASE_DOWN = (OperationalError, InterfaceError)


def database_unavailable(exc: BaseException) -> tuple[dict[str, Any], dict[str, str]]:
    """The contract's 503 body and headers for a request the database could not serve."""
    logger.warning("database unavailable: %s", exc)
    return error_body("unavailable", "The database is unavailable; nothing was done. Retry shortly."), {"Retry-After": "5"}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    # Imported here: rest_framework.views loads the authentication classes, which import this module.
    from rest_framework.views import set_rollback

    if isinstance(exc, ServiceError):
        set_rollback()
        return Response(error_body(exc.code, exc.detail, exc.errors), status=exc.status_code, headers=exc.headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        set_rollback()
        errors = _flatten(exc.detail)
        return Response(error_body("validation_error", _summary(errors), errors), status=status.HTTP_400_BAD_REQUEST)

    if isinstance(exc, exceptions.APIException):
        set_rollback()
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
        if code is None:
            code = exc.default_code if isinstance(exc.default_code, str) else "error"
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if isinstance(exc, exceptions.ParseError):
            detail = f"Malformed JSON: {detail}"
        headers: dict[str, str] = {}
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        # Throttled.__init__ sets `wait`; DRF's stubs leave the attribute out.
        wait: float | None = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
        if wait is not None:
            headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return Response(error_body(code, str(detail)), status=exc.status_code, headers=headers)

    set_rollback()
    if isinstance(exc, DATABASE_DOWN):
        body, headers = database_unavailable(exc)
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)
    logger.exception("unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "view")
    return Response(
        error_body("internal_error", "An unexpected error occurred; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def json_error(code: str, detail: str, status_code: int, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(error_body(code, detail), status=status_code)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return defaults.page_not_found(request, exception or Http404())
    return json_error("not_found", "Not found.", 404)


def handler500(request: HttpRequest) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return defaults.server_error(request)
    return json_error("internal_error", "An unexpected error occurred; it has been logged.", 500)


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error("validation_error", "Bad request.", 400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error("permission_denied", "Forbidden.", 403)
