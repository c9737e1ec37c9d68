from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Account
from apps.accounts.selectors import account_used_today
from apps.accounts.services import account_set_callback


class AccountOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    rate_limit = serializers.IntegerField()
    daily_quota = serializers.IntegerField()
    used_today = serializers.IntegerField()
    timezone = serializers.CharField()
    callback_url = serializers.CharField(allow_null=True)
    callback_secret_set = serializers.BooleanField()


def _account_body(account: Account) -> dict[str, Any]:
    account.used_today = account_used_today(account=account)  # type: ignore[attr-defined]
    body = dict(AccountOutput(account).data)
    body["callback_url"] = account.callback_url or None
    return body


class AccountView(APIView):
    class PatchInput(serializers.Serializer):
        callback_url = serializers.URLField(max_length=500, allow_null=True, allow_blank=True, required=False)
        rotate_callback_secret = serializers.BooleanField(required=False, default=False)

        def validate_callback_url(self, value: str | None) -> str | None:
            if value and not value.lower().startswith(("https://", "http://")):
                raise serializers.ValidationError("Use an http:// or https:// URL.")
            return value or None

    def get(self, request: Request) -> Response:
        return Response(_account_body(request.user))

    def patch(self, request: Request) -> Response:
        data = self.PatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        account: Account = request.user
        url = data.validated_data.get("callback_url", account.callback_url or None)
        secret = account_set_callback(
            account=account, callback_url=url, rotate_secret=data.validated_data["rotate_callback_secret"]
        )
        body = _account_body(account)
        if secret is not None:
            body["callback_secret"] = secret
        return Response(body)
