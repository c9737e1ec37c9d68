"""The API key as an OpenAPI security scheme: `Authorization: Bearer <api key>` (API.md, Conventions).
Registered with drf-spectacular by being imported (apps.accounts.apps.AccountsConfig.ready)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from apps.accounts.authentication import ApiKeyAuthentication


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The account's API key, printed once by `manage.py create_account`: "
            "`Authorization: Bearer <api key>`.",
        }
