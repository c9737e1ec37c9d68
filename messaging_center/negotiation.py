"""Content negotiation for an API that speaks only JSON."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation


class JsonContentNegotiation(DefaultContentNegotiation):
    """A view with a single renderer (every API view: JSON) answers with it whatever the Accept
    header says, without parsing the header (docs/performance.md, Accept path). Views with several
    renderers (the schema) still negotiate."""

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> tuple[Any, str]:
        if len(renderers) == 1 and format_suffix is None:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
