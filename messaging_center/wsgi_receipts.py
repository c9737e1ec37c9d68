"""The receipts listener's WSGI application: the same Django project with only the receipts URLs and
a short middleware chain (no sessions, CSRF, auth or static files for machine-to-machine reports):
one Twilio report per message makes this the busiest endpoint during delivery."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_center.settings")
os.environ["MC_SURFACE"] = "receipts"
application = get_wsgi_application()
