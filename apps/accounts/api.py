from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.accounts.models import Account, PushPlatform, Recipient
from apps.accounts.selectors import account_used_today, recipient_get, recipient_preferences
from apps.accounts.services import PushTokenInput, account_set_callback, preferences_update, recipient_put


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
        return Response(_account_body(request_account(request)))

    def patch(self, request: Request) -> Response:
        data = self.PatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        account = request_account(request)
        url = data.validated_data.get("callback_url", account.callback_url or None)
        secret = account_set_callback(
            account=account, callback_url=url, rotate_secret=data.validated_data["rotate_callback_secret"]
        )
        body = _account_body(account)
        if secret is not None:
            body["callback_secret"] = secret
        return Response(body)


class PushTokenOutput(serializers.Serializer):
    platform = serializers.CharField()
    token = serializers.CharField()
    active = serializers.BooleanField()


class RecipientOutput(serializers.Serializer):
    user_id = serializers.CharField()
    phone = serializers.CharField(allow_null=True)
    email = serializers.CharField(allow_null=True)
    wechat_openid = serializers.CharField(allow_null=True)
    wecom_userid = serializers.CharField(allow_null=True)
    push_tokens = PushTokenOutput(many=True, source="push_tokens.all")
    timezone = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, instance: Recipient) -> dict[str, Any]:
        body = super().to_representation(instance)
        # Stored blank, shown as null: "not known" rather than an empty address.
        return {key: (None if value == "" else value) for key, value in body.items()}


class RecipientView(APIView):
    class PutInput(serializers.Serializer):
        class PushTokenFields(serializers.Serializer):
            platform = serializers.ChoiceField(choices=PushPlatform.choices)
            token = serializers.CharField(max_length=512)

        phone = serializers.CharField(max_length=32, required=False, allow_null=True, allow_blank=True)
        email = serializers.CharField(max_length=254, required=False, allow_null=True, allow_blank=True)
        wechat_openid = serializers.CharField(max_length=128, required=False, allow_null=True, allow_blank=True)
        wecom_userid = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
        push_tokens = PushTokenFields(many=True, required=False, allow_null=True)
        timezone = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)

    @extend_schema(responses=RecipientOutput)
    def get(self, request: Request, user_id: str) -> Response:
        return Response(RecipientOutput(recipient_get(account_id=request_account(request).id, user_id=user_id)).data)

    @extend_schema(request=PutInput, responses=RecipientOutput)
    def put(self, request: Request, user_id: str) -> Response:
        data = self.PutInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        recipient = recipient_put(
            account=request_account(request),
            user_id=user_id,
            phone=fields.get("phone") or "",
            email=fields.get("email") or "",
            wechat_openid=fields.get("wechat_openid") or "",
            wecom_userid=fields.get("wecom_userid") or "",
            timezone_name=fields.get("timezone") or "",
            push_tokens=[PushTokenInput(**token) for token in fields.get("push_tokens") or []],
        )
        return Response(RecipientOutput(recipient).data)


class PreferencesView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, description="{category: {channel: subscribed}}")
    def get(self, request: Request, user_id: str) -> Response:
        recipient = recipient_get(account_id=request_account(request).id, user_id=user_id)
        return Response(recipient_preferences(recipient=recipient))

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def patch(self, request: Request, user_id: str) -> Response:
        recipient = recipient_get(account_id=request_account(request).id, user_id=user_id)
        preferences_update(recipient=recipient, changes=request.data)
        return Response(recipient_preferences(recipient=recipient))
