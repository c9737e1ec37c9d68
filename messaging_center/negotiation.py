"""Content negotiation for an API that speaks only JSON."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class JsonContentNegotiation(DefaultContentNegotiation):
    """A view with a single renderer (every API view: JSON) answers with it whatever the Accept
    header says, without parsing the header (docs/performance.md, Accept path). Views with several
    renderers (the schema) still negotiate."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        # DRF passes the view's renderers as a list.
        if format_suffix is None and isinstance(renderers, list) and len(renderers) == 1:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
