"""`GET /api/v1/`: where the schema, the docs and the main collections are. No API key needed, so that
the address `make run` prints answers in a browser."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# link → URL name
LINKS = {
    "schema": "schema",
    "docs": "docs",
    "redoc": "redoc",
    "account": "account",
    "templates": "templates",
    "messages": "messages",
    "verifications": "verifications",
    "stats": "stats",
}


class ApiRootView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="api_root",
        summary="Links to the schema, the docs and the collections",
        tags=["api"],
        responses=inline_serializer("ApiLinks", {link: serializers.CharField() for link in LINKS}),
        examples=[
            OpenApiExample(
                "Links",
                value={
                    "schema": "/api/schema/",
                    "docs": "/api/docs/",
                    "redoc": "/api/redoc/",
                    "account": "/api/v1/account",
                    "templates": "/api/v1/templates",
                    "messages": "/api/v1/messages",
                    "verifications": "/api/v1/verifications",
                    "stats": "/api/v1/stats",
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        return Response({link: reverse(name) for link, name in LINKS.items()})
