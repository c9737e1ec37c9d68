"""`GET /stats`."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.dispatch import stats
from apps.dispatch.api.messages import _TIMESTAMP
from messaging_center.db import bounded_read
from messaging_center.schema import AUTHENTICATED, error_responses


# Documents what stats.stats_get writes.
@extend_schema_serializer(
    component_name="StatsGroup", description="One group's figures; a rate is null where it would divide by 0."
)
class StatsGroupOutput(serializers.Serializer):
    key = serializers.CharField(
        help_text="The provider, channel, template code, day (YYYY-MM-DD, UTC) or destination segment (country ISO "
        "code; +86 by carrier: CN-mobile, CN-unicom, CN-telecom, CN-other; the channel for non-SMS) of the group."
    )
    total = serializers.IntegerField()
    sent = serializers.IntegerField(help_text="Accepted by a provider (sent, delivered or undelivered).")
    delivered = serializers.IntegerField()
    undelivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    expired = serializers.IntegerField()
    suppressed = serializers.IntegerField()
    rejected = serializers.IntegerField()
    attempts = serializers.IntegerField(
        help_text="Provider calls made in the range (a message failed over counts one call per provider)."
    )
    success_rate = serializers.FloatField(
        allow_null=True, help_text="Calls the provider accepted / calls made with it (per call, not per message)."
    )
    duplicates = serializers.IntegerField(
        help_text="Messages a provider delivered too after another one had them (an attempt whose outcome was "
        "unknown reached the person as well; verification codes hedged past a slow provider included)."
    )
    receipt_rate = serializers.FloatField(allow_null=True, help_text="With a receipt / sent.")
    delivery_rate = serializers.FloatField(allow_null=True, help_text="Delivered / sent.")
    latency_p50_ms = serializers.IntegerField(allow_null=True, help_text="Accepted → delivered.")
    latency_p95_ms = serializers.IntegerField(allow_null=True, help_text="Accepted → delivered.")
    fill_rate = serializers.FloatField(allow_null=True, help_text="Verification codes checked valid / codes sent.")
    cost = serializers.FloatField(
        help_text="What the providers charged for the group's sent messages (their price per SMS segment to the "
        "destination segment times SMS segments, recorded when sent), in `currency`; 0 where no price is set."
    )
    currency = serializers.CharField(help_text="The currency of `cost` (the COST_CURRENCY setting), e.g. CNY.")

    def get_fields(self) -> dict[str, serializers.Field]:
        # `errors` cannot be a declared attribute: Serializer.errors is the validation errors.
        fields = super().get_fields()
        fields["errors"] = serializers.DictField(
            child=serializers.IntegerField(),
            help_text="Failed calls by reason, most first: invalid_number, blocked, content_rejected, invalid_token, "
            "throttled, provider_config, timeout, unreachable, provider_error, rejected.",
        )
        return fields


@extend_schema(tags=["stats"])
class StatsView(APIView):
    @extend_schema(
        operation_id="stats_get",
        summary="Delivery statistics",
        description="Delivery figures of the account's own messages, grouped; served from per-minute, hour and day "
        "rollups (the range counts to the minute).",
        parameters=[
            OpenApiParameter("group_by", enum=list(stats.GROUP_KEYS), default="day"),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME, description=f"Inclusive. {_TIMESTAMP}"),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME, description=f"Exclusive. {_TIMESTAMP}"),
        ],
        responses={
            200: inline_serializer("Stats", {"groups": StatsGroupOutput(many=True)}),
            **error_responses(*AUTHENTICATED, "validation_error"),
        },
    )
    def get(self, request: Request) -> Response:
        with bounded_read("Narrow the time window (created_after, created_before) or retry shortly."):
            groups = stats.stats_get(account=request_account(request), params=request.query_params.dict())
        return Response({"groups": groups})
