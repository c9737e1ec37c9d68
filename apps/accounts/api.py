from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.accounts.models import Account, PushPlatform, Recipient
from apps.accounts.selectors import account_used_today, recipient_get, recipient_preferences
from apps.accounts.services import PushTokenInput, account_set_callback, preferences_update, recipient_put
from messaging_center.schema import AUTHENTICATED, JSON_BODY, USER_ID, error_responses
from messaging_center.vocabulary import Category, Channel


@extend_schema_serializer(component_name="Account")
class AccountOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    rate_limit = serializers.IntegerField(help_text="Requests per second.")
    daily_quota = serializers.IntegerField(help_text="Messages per day, counted from midnight in the account's time zone.")
    used_today = serializers.IntegerField()
    retention_days = serializers.IntegerField(
        help_text="Days of history kept (1 to 400, set by operators): older messages, their events, receipts and "
        "callbacks are deleted, and a deleted message answers 404."
    )
    timezone = serializers.CharField()
    callback_url = serializers.CharField(allow_null=True, help_text="Where status callbacks are POSTed.")
    callback_secret_set = serializers.BooleanField()


@extend_schema_serializer(component_name="AccountUpdated")
class AccountUpdatedOutput(AccountOutput):
    """The PATCH response: the account, and its callback secret when this request set one."""

    callback_secret = serializers.CharField(
        required=False,
        help_text="Only in the response of the PATCH that first sets a callback URL or rotates the secret: "
        "the key of the callbacks' `X-MC-Signature`. Shown once.",
    )


def _account_body(account: Account) -> dict[str, Any]:
    account.used_today = account_used_today(account=account)  # type: ignore[attr-defined]
    body = dict(AccountOutput(account).data)
    body["callback_url"] = account.callback_url or None
    return body


class AccountView(APIView):
    @extend_schema_serializer(
        component_name="AccountUpdate",
        examples=[OpenApiExample("Set the callback URL", value={"callback_url": "https://orders.example.com/mc/status"})],
    )
    class PatchInput(serializers.Serializer):
        callback_url = serializers.URLField(max_length=500, allow_null=True, allow_blank=True, required=False)
        rotate_callback_secret = serializers.BooleanField(required=False, default=False)

        def validate_callback_url(self, value: str | None) -> str | None:
            if value and not value.lower().startswith(("https://", "http://")):
                raise serializers.ValidationError("Use an http:// or https:// URL.")
            return value or None

    @extend_schema(
        operation_id="account_get", summary="Get the account", responses={200: AccountOutput, **error_responses(*AUTHENTICATED)}
    )
    def get(self, request: Request) -> Response:
        return Response(_account_body(request_account(request)))

    @extend_schema(
        operation_id="account_update",
        summary="Set the callback URL",
        request=PatchInput,
        responses={200: AccountUpdatedOutput, **error_responses(*AUTHENTICATED, *JSON_BODY)},
    )
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


@extend_schema_serializer(component_name="PushToken")
class PushTokenOutput(serializers.Serializer):
    platform = serializers.ChoiceField(choices=PushPlatform.choices)
    token = serializers.CharField()
    active = serializers.BooleanField(help_text="False once a provider reported the token unregistered.")


@extend_schema_serializer(component_name="Recipient")
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


@extend_schema(tags=["recipients"], parameters=[USER_ID])
class RecipientView(APIView):
    @extend_schema_serializer(
        component_name="RecipientPut",
        examples=[
            OpenApiExample(
                "A user's contacts",
                value={
                    "phone": "+8613800138000",
                    "email": "li.wei@example.com",
                    "push_tokens": [{"platform": "fcm", "token": "d3Vx…"}],
                    "timezone": "Asia/Shanghai",
                },
            )
        ],
    )
    class PutInput(serializers.Serializer):
        @extend_schema_serializer(component_name="PushTokenPut")
        class PushTokenFields(serializers.Serializer):
            platform = serializers.ChoiceField(choices=PushPlatform.choices)
            token = serializers.CharField(max_length=512)

        phone = serializers.CharField(max_length=32, required=False, allow_null=True, allow_blank=True)
        email = serializers.CharField(max_length=254, required=False, allow_null=True, allow_blank=True)
        wechat_openid = serializers.CharField(max_length=128, required=False, allow_null=True, allow_blank=True)
        wecom_userid = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
        push_tokens = PushTokenFields(many=True, required=False, allow_null=True)
        timezone = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)

    @extend_schema(
        operation_id="recipients_get",
        summary="Get a recipient",
        responses={200: RecipientOutput, **error_responses(*AUTHENTICATED, "not_found")},
    )
    def get(self, request: Request, user_id: str) -> Response:
        return Response(RecipientOutput(recipient_get(account_id=request_account(request).id, user_id=user_id)).data)

    @extend_schema(
        operation_id="recipients_put",
        summary="Create or replace a recipient",
        description="Creates or replaces the user's contact record. Phones are validated and stored E.164.",
        request=PutInput,
        responses={200: RecipientOutput, **error_responses(*AUTHENTICATED, *JSON_BODY)},
    )
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


def _preferences(name: str, switches: str, *, partial: bool) -> serializers.Serializer:
    """{category: {channel: subscribed}} with every category and channel named; all optional when `partial`."""

    fields: dict[str, serializers.Field] = {channel: serializers.BooleanField(required=not partial) for channel in Channel.values}
    channels = type(inline_serializer(switches, fields))  # one component, a field per category
    return inline_serializer(name, {category: channels(required=not partial) for category in Category.values})


PREFERENCES = _preferences("Preferences", "ChannelSwitches", partial=False)
PREFERENCES_UPDATE = _preferences("PreferencesUpdate", "ChannelSwitchesUpdate", partial=True)


@extend_schema(tags=["recipients"], parameters=[USER_ID])
class PreferencesView(APIView):
    @extend_schema(
        operation_id="recipients_preferences_get",
        summary="Get a recipient's preferences",
        description="Every category and channel; true = subscribed (the default). Verification is always on.",
        responses={200: PREFERENCES, **error_responses(*AUTHENTICATED, "not_found")},
    )
    def get(self, request: Request, user_id: str) -> Response:
        recipient = recipient_get(account_id=request_account(request).id, user_id=user_id)
        return Response(recipient_preferences(recipient=recipient))

    @extend_schema(
        operation_id="recipients_preferences_update",
        summary="Change a recipient's preferences",
        description="Merges the given switches into the stored ones. `verification` cannot be turned off.",
        request=PREFERENCES_UPDATE,
        responses={200: PREFERENCES, **error_responses(*AUTHENTICATED, *JSON_BODY, "not_found")},
        examples=[OpenApiExample("No marketing SMS", value={"marketing": {"sms": False}}, request_only=True)],
    )
    def patch(self, request: Request, user_id: str) -> Response:
        recipient = recipient_get(account_id=request_account(request).id, user_id=user_id)
        preferences_update(recipient=recipient, changes=request.data)
        return Response(recipient_preferences(recipient=recipient))
