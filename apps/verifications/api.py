"""`POST /api/v1/verifications` and `/verifications/check`: thin DRF views over the services."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import request_account
from apps.verifications import services


class VerificationSendView(APIView):
    def post(self, request: Request) -> Response:
        sent = services.verification_send(account=request_account(request), data=request.data)
        body = {
            "id": sent.verification.public_id,
            "message_id": sent.message_public_id,
            "expires_at": sent.verification.expires_at.isoformat(),
        }
        return Response(body, status=202)


class VerificationCheckView(APIView):
    def post(self, request: Request) -> Response:
        result = services.verification_check(account=request_account(request), data=request.data)
        return Response({"valid": True} if result.valid else {"valid": False, "reason": result.reason})
