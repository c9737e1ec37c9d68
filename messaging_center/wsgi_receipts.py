"""The receipts listener's WSGI application: the same Django project with only the receipts URLs and
a short middleware chain (no sessions, CSRF, auth or static files for machine-to-machine reports):
one Twilio report per message makes this the busiest endpoint during delivery."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from messaging_center.request_body import read_chunked_bodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_center.settings")
os.environ["MC_SURFACE"] = "receipts"
application = read_chunked_bodies(get_wsgi_application(), limit=settings.MAX_REQUEST_BODY_BYTES)
