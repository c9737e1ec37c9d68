"""`POST /api/v1/verifications` and `/verifications/check`: thin DRF views over the services."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.verifications import services
from messaging_center.schema import AUTHENTICATED, JSON_BODY, error_responses
from messaging_center.times import api_time

# check → reason, as services.verification_check answers it
FAILURE_REASONS = ("invalid", "expired", "too_many_attempts")


@extend_schema_serializer(component_name="VerificationTo")
class VerificationTo(serializers.Serializer):
    """The address, under the key of the template's channel (`phone` for sms)."""

    phone = serializers.CharField(required=False)
    email = serializers.CharField(required=False)
    wechat_openid = serializers.CharField(required=False)
    wecom_userid = serializers.CharField(required=False)
    push_token = serializers.CharField(required=False)


# The serializers of these views document the bodies that apps/verifications/services checks.
@extend_schema(tags=["verifications"])
class VerificationSendView(APIView):
    @extend_schema_serializer(
        component_name="VerificationSendRequest",
        examples=[OpenApiExample("By SMS", value={"to": {"phone": "+8613800138000"}, "template": "login_code"})],
    )
    class Input(serializers.Serializer):
        to = VerificationTo()
        template = serializers.CharField(help_text="The code of a verification template (it contains `{{code}}`).")

    @extend_schema_serializer(component_name="VerificationSent")
    class Output(serializers.Serializer):
        id = serializers.CharField(help_text="The verification's id.")
        message_id = serializers.CharField(help_text="`msg_…`: the message carrying the code.")
        expires_at = serializers.DateTimeField(help_text="The code is valid until then (the template's TTL).")

    @extend_schema(
        operation_id="verifications_send",
        summary="Send a verification code",
        description="Draws a 6-digit code, stores only its hash and sends it on the critical lane. "
        "The frequency limits of verification messages apply.",
        request=Input,
        responses={
            202: Output,
            **error_responses(
                *AUTHENTICATED,
                *JSON_BODY,
                "missing_params",
                "template_not_found",
                "frequency_limited",
                "duplicate",
                "quota_exceeded",
                "verification_not_sent",
                "unavailable",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        sent = services.verification_send(account=request_account(request), data=request.data)
        body = {
            "id": sent.verification.public_id,
            "message_id": sent.message_public_id,
            "expires_at": api_time(sent.verification.expires_at),
        }
        return Response(body, status=202)


@extend_schema(tags=["verifications"])
class VerificationCheckView(APIView):
    @extend_schema_serializer(
        component_name="VerificationCheckRequest",
        examples=[OpenApiExample("A code", value={"to": {"phone": "+8613800138000"}, "code": "123456"})],
    )
    class Input(serializers.Serializer):
        to = VerificationTo()
        code = serializers.CharField(help_text="The code the user typed.")

    @extend_schema_serializer(
        component_name="VerificationCheck",
        examples=[
            OpenApiExample("Valid", value={"valid": True}),
            OpenApiExample("Expired", value={"valid": False, "reason": "expired"}),
        ],
    )
    class Output(serializers.Serializer):
        valid = serializers.BooleanField()
        reason = serializers.ChoiceField(
            choices=FAILURE_REASONS, required=False, help_text="Only when not valid. 5 wrong tries burn the code."
        )

    @extend_schema(
        operation_id="verifications_check",
        summary="Check a verification code",
        description="Checks the latest code sent to the address. A code is valid once.",
        request=Input,
        responses={200: Output, **error_responses(*AUTHENTICATED, *JSON_BODY)},
    )
    def post(self, request: Request) -> Response:
        result = services.verification_check(account=request_account(request), data=request.data)
        return Response({"valid": True} if result.valid else {"valid": False, "reason": result.reason})
