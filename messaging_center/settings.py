"""Django settings, read from the environment (see README "Settings").

In the development run, with `DATABASE_URL`/`REDIS_URL` unset, the embedded PostgreSQL and Redis under
`.data/` are used (started on first use) and a generated secret key is kept there; outside it the start
stops naming every production variable that is missing.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
import phonenumbers
from celery.schedules import crontab
from kombu import Exchange, Queue

from devstack import embedded
from messaging_center.env import env_bool, env_int, env_list, env_str, env_url, is_dev_run, require_production_variables
from messaging_center.vocabulary import Priority

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = embedded.default_data_dir()

DEBUG = env_bool("DEBUG", False)
# The development run: DEBUG, a checkout given none of the production variables, or MC_DEV_RUN=1 (the
# launcher's default run and the test run set it for their processes). Outside it every production
# variable is required (no generated key, no embedded server), TLS-ready defaults apply and callbacks
# go only to public addresses.
DEV_RUN = is_dev_run(debug=DEBUG)
if not DEV_RUN:
    require_production_variables()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])


def _secret_key() -> str:
    configured = env_str("SECRET_KEY", "")
    if configured:
        if len(configured) < 32:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("Environment variable SECRET_KEY must be at least 32 characters long.")
        return configured
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# Encrypts provider credentials and callback secrets at rest; in the development run it falls back to a
# key derived from SECRET_KEY.
ENCRYPTION_KEY = env_str("ENCRYPTION_KEY", "")

_database_url = env_url("DATABASE_URL", ("postgres", "postgresql"))
_redis_url = env_url("REDIS_URL", ("redis", "rediss"))
if _database_url is None:
    _database_url = embedded.EmbeddedPostgres(DATA_DIR / "postgres").ensure_running()
if _redis_url is None:
    _redis_url = embedded.EmbeddedRedis(DATA_DIR / "redis").ensure_running()
REDIS_URL: str = _redis_url

DATABASES = {
    "default": {
        **dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0)),
        # No `SELECT 1` before each request's first query: a connection broken by a database
        # restart fails one request and is then replaced (Django drops connections that errored).
        "CONN_HEALTH_CHECKS": False,
        # Statements run through messaging_center.db.bound_cursor (the hot paths) are prepared on
        # their connection after this many executions; planning cost more than running them.
        # 0 turns preparing off (e.g. behind PgBouncer in transaction mode before 1.21).
        # Their generic plan is kept (a custom plan would mean planning again on every execution).
        # No parallel query: our statements read a few rows through an index, and over a table with
        # many partitions the planner's estimates made it start two workers (~10 ms) for a read that
        # found nothing in 0.05 ms (verification failover with 5 M messages: 20 → 6 ms without).
        "OPTIONS": {
            # A database host that does not answer is an outage found in seconds (the send path then
            # spools, apps/dispatch/spool), not a request hanging on libpq's unlimited connect.
            "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 2, minimum=1),
            "prepare_threshold": env_int("DB_PREPARE_THRESHOLD", 5, minimum=0) or None,
            "options": "-c plan_cache_mode=force_generic_plan -c max_parallel_workers_per_gather=0",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as static files: /api/docs/ works offline
    "django_celery_beat",
    "apps.accounts",
    "apps.templates.apps.TemplatesConfig",
    "apps.dispatch",
    "apps.receipts",
    "apps.verifications",
    "apps.alerts",
    "apps.monitoring",  # the staff dashboard (/admin/dashboard/) and the scrape-time gauges of /metrics
    "devstack",  # its management commands only (configure_simulator_*)
    "axes",  # admin sign-ins: lockout after repeated failures
]

MIDDLEWARE = [
    "messaging_center.middleware.RequestMetricsMiddleware",
    "messaging_center.middleware.BodySizeLimitMiddleware",
    "messaging_center.middleware.DatabaseUnavailableMiddleware",
    # Before sessions and CSRF: a sign-in refused for the flood costs next to nothing.
    "messaging_center.middleware.AdminLoginGuardMiddleware",
    "messaging_center.middleware.ApiUtcMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "messaging_center.urls"
# The API (/api/v1/…, messaging_center/wsgi.py) authenticates with API keys: sessions, CSRF, the auth middleware,
# flash messages, frame options and static files have nothing to do there (docs/performance.md, Accept path).
API_MIDDLEWARE = [
    "messaging_center.middleware.RequestMetricsMiddleware",
    "messaging_center.middleware.BodySizeLimitMiddleware",
    "messaging_center.middleware.DatabaseUnavailableMiddleware",
    "messaging_center.middleware.ApiUtcMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
# The receipts listener (messaging_center/wsgi_receipts.py): providers' reports only.
RECEIPTS_MIDDLEWARE = [
    "messaging_center.middleware.RequestMetricsMiddleware",
    "messaging_center.middleware.BodySizeLimitMiddleware",
    "messaging_center.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
]
if env_str("MC_SURFACE", "") == "receipts":
    ROOT_URLCONF = "messaging_center.urls_receipts"
    MIDDLEWARE = RECEIPTS_MIDDLEWARE
WSGI_APPLICATION = "messaging_center.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "messaging_center" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
# Region used to read phone numbers given without a country code (ISO 3166 code, e.g. CN, US).
DEFAULT_PHONE_REGION = env_str("DEFAULT_PHONE_REGION", "CN").strip().upper()
if DEFAULT_PHONE_REGION not in phonenumbers.SUPPORTED_REGIONS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"Environment variable DEFAULT_PHONE_REGION={DEFAULT_PHONE_REGION!r} is not a known region.")
USE_TZ = True
USE_I18N = False
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from finders; it only needs the folder
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Operators' sign-in (/admin/) ------------------------------------------------------------------
ADMIN_LOGIN_PATH = "/admin/login/"
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Wrong passwords lock the name (whatever the address) and the address (whatever the name) for the
# cool-off; an operator unlocks at once in admin (Axes → Access attempts) or with `manage.py axes_reset_username`.
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = env_int("ADMIN_LOGIN_LOCKOUT_MINUTES", 30, minimum=1) / 60  # hours
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no start-up banner in every manage.py command; lockouts are still logged
AXES_COOLOFF_MESSAGE = (
    "Sign-in locked: too many wrong passwords for this name or from this address. "
    "Try again later, or ask an operator to unlock it."
)
# The client address axes counts: REMOTE_ADDR, or behind a proxy the header it sets (e.g. HTTP_X_REAL_IP).
AXES_CLIENT_IP_CALLABLE = "messaging_center.middleware.client_address"
ADMIN_CLIENT_ADDRESS_HEADER = env_str("ADMIN_CLIENT_ADDRESS_HEADER", "")
# Password hashing on one low-priority thread per process (messaging_center/passwords.py); same hashes as Django's.
PASSWORD_HASHERS = [
    "messaging_center.passwords.LowPriorityPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

# --- TLS: secure defaults outside the development run (README, Production) ---------------------------
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients): TRUST_X_FORWARDED_PROTO=1.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEV_RUN)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes from inside the network
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEV_RUN)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEV_RUN)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEV_RUN else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEV_RUN)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEV_RUN)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# The contract caps bodies at 5 MiB; the middleware answers 413 before reading a larger body.
MAX_REQUEST_BODY_BYTES = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 100_000

# API reads (search, one message, stats, inbox lists) stop after this long: 503 `unavailable` with
# Retry-After and a hint to narrow the search, never a request holding a connection for minutes.
API_READ_TIMEOUT_MS = env_int("API_READ_TIMEOUT_MS", 5000, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["messaging_center.parsers.DepthLimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "messaging_center.negotiation.JsonContentNegotiation",
    "EXCEPTION_HANDLER": "messaging_center.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "messaging_center.schema.ApiSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["apps.dispatch.policy.throttling.AccountRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Messaging Center API",
    "DESCRIPTION": (
        "One service through which every business system sends its notifications.\n\n"
        "Authenticate with `Authorization: Bearer <api key>`. JSON in and out. Lists are cursor pages: "
        '`?limit=` (default 50, at most 500) and `?cursor=`; the body is `{"results": [...], "next": <cursor or null>}`. '
        'Every error has the body `{"code", "detail", "errors"?}`; branch on `code`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",  # tags from the first path segment after it
    "TAGS": [
        {"name": "api", "description": "Where everything is."},
        {"name": "account", "description": "The calling account: limits, usage, status callbacks."},
        {"name": "templates", "description": "Message templates, addressed by their code."},
        {"name": "messages", "description": "Send, search, read and cancel messages."},
        {"name": "recipients", "description": "Users' contact records and subscription preferences."},
        {"name": "inbox", "description": "The in-site inbox of a user."},
        {"name": "verifications", "description": "One-time codes: send and check."},
        {"name": "stats", "description": "Delivery figures of the account's messages."},
    ],
    "ENUM_NAME_OVERRIDES": {
        "Channel": "messaging_center.vocabulary.Channel",
        "Category": "messaging_center.vocabulary.Category",
        "Priority": "messaging_center.vocabulary.Priority",
        "TemplateStatus": "apps.templates.models.Status",
        "MessageStatus": "apps.dispatch.models.Status",
        "PushPlatform": "apps.accounts.models.PushPlatform",
        "SendOutcomeStatus": "apps.dispatch.api.messages.SEND_OUTCOMES",
        "VerificationFailure": "apps.verifications.api.FAILURE_REASONS",
        "StatsGroupBy": "apps.dispatch.stats.GROUP_KEYS",
        "SmsEncoding": "apps.templates.api.SMS_ENCODINGS",
    },
    # Served from the drf-spectacular-sidecar package through whitenoise: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- The spool (apps/dispatch/spool): verification and transactional sends through a database outage ---
# At most this many messages wait in the spool; past it a send answers 503 `unavailable`. 0: no spool.
SPOOL_MAX_MESSAGES = env_int("SPOOL_MAX_MESSAGES", 20_000, minimum=0)

# --- Alerts (apps/alerts/) -------------------------------------------------------------------------
# Alerts are also POSTed here as {"msgtype": "text", "text": {"content": …}} (DingTalk/Feishu robots).
ALERT_WEBHOOK_URL = env_url("ALERT_WEBHOOK_URL", ("http", "https")) or ""
# The internal account operator notices are sent as (made on first use, with its templates).
ALERT_OPS_ACCOUNT = env_str("ALERT_OPS_ACCOUNT", "ops")
# The hour (TIME_ZONE) the daily quality report goes out.
ALERT_REPORT_HOUR = env_int("ALERT_REPORT_HOUR", 8, minimum=0, maximum=23)

# --- Celery -------------------------------------------------------------------------------------
# One lane (queue) per priority, highest first.
LANES = tuple(Priority.values)
# mc.housekeeping: long jobs (retention rewrites a day of partitions) that must not hold up the
# maintenance queue's relay, due messages and sweeper, which share one worker child.
QUEUES = (*(f"mc.{lane}" for lane in LANES), "mc.receipts", "mc.maintenance", "mc.housekeeping")
# Countdown retries stay below this cap; the visibility timeout sits well above it so that a task
# waiting on its countdown is never handed out twice (DESIGN.md, reliability rules).
MAX_RETRY_COUNTDOWN_SECONDS = 300
DISPATCH_SENDING_LEASE_SECONDS = env_int("DISPATCH_SENDING_LEASE_SECONDS", 60, minimum=1)
DISPATCH_QUEUED_LEASE_SECONDS = env_int("DISPATCH_QUEUED_LEASE_SECONDS", 120, minimum=1)
# Per lane: a provider call unanswered this long is sent through another provider as well (hedged;
# apps.dispatch.delivery.hedge), 0 = wait for the call. Only codes by default: a second code is
# harmless, a late one is not, while a second copy of other messages is a duplicate to the person.
# 1.5 s rather than 2: the second call must fit too for a code to be sent within 2 s of its accept.
PROVIDER_CALL_DEADLINE_MS = {
    lane: env_int(f"PROVIDER_CALL_DEADLINE_{lane.upper()}_MS", 1500 if lane == Priority.CRITICAL else 0, minimum=0)
    for lane in LANES
}
BROKER_VISIBILITY_TIMEOUT_SECONDS = env_int("BROKER_VISIBILITY_TIMEOUT", 3600, minimum=MAX_RETRY_COUNTDOWN_SECONDS * 2)

CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT_SECONDS,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "retry_on_timeout": True,
    "health_check_interval": 10,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_DEFAULT_QUEUE = "mc.normal"
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES)
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = False
# Every periodic job, in one place (django-celery-beat copies it into the admin-editable tables).
_MAINTENANCE = {"queue": "mc.maintenance", "expires": 30}
_RECEIPTS = {"queue": "mc.receipts", "expires": 30}
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "relay-outbox": {"task": "dispatch.relay_outbox", "schedule": 2.0, "options": _MAINTENANCE},
    "enqueue-due-scheduled": {"task": "dispatch.enqueue_due", "schedule": 2.0, "options": _MAINTENANCE},
    "sweep-stuck-messages": {"task": "dispatch.sweep", "schedule": 15.0, "options": _MAINTENANCE},
    # Messages accepted into the spool during a database outage, into the database once it is back.
    "replay-spool": {"task": "dispatch.replay_spool", "schedule": 2.0, "options": _MAINTENANCE},
    "purge-idempotency-keys": {"task": "dispatch.purge_idempotency_keys", "schedule": 3600.0, "options": _MAINTENANCE},
    # Delivery rate, receipt silence and latency per provider and destination segment, from the last
    # minutes of the rollups, into the demotion state routing reads (apps/dispatch/routing/quality.py).
    "routing-quality": {"task": "dispatch.routing_quality", "schedule": 15.0, "options": _MAINTENANCE},
    # Partitions for the next days, and each account's retention (apps/dispatch/retention.py).
    "apply-retention": {
        "task": "dispatch.retention",
        "schedule": 3600.0,
        "options": {"queue": "mc.housekeeping", "expires": 600},
    },
    "poll-provider-receipts": {"task": "receipts.poll", "schedule": 30.0, "options": _RECEIPTS},
    "rematch-early-receipts": {"task": "receipts.rematch", "schedule": 30.0, "options": _RECEIPTS},
    "flag-receipt-timeouts": {"task": "receipts.flag_timeouts", "schedule": 60.0, "options": _RECEIPTS},
    "replay-spooled-receipts": {"task": "receipts.replay_spooled", "schedule": 2.0, "options": _RECEIPTS},
    "failover-silent-verifications": {"task": "receipts.failover_silent", "schedule": 10.0, "options": _RECEIPTS},
    "publish-due-callbacks": {"task": "receipts.publish_due_callbacks", "schedule": 15.0, "options": _RECEIPTS},
    # Alert rules over the rollups, provider health, lanes, callbacks and quotas (apps/alerts/): a few
    # indexed reads; a notice adds its webhook call (at most 2 s to connect, 3 s to answer) and sends.
    "evaluate-alerts": {"task": "alerts.evaluate", "schedule": 30.0, "options": _MAINTENANCE},
    # The operators' morning report, in TIME_ZONE (CELERY_TIMEZONE).
    "daily-quality-report": {
        "task": "alerts.daily_report",
        "schedule": crontab(hour=ALERT_REPORT_HOUR, minute=0),
        "options": {"queue": "mc.housekeeping", "expires": 3600},
    },
}

# --- Routing on delivery data and cost (apps/dispatch/routing/quality.py, docs/quality.md) ---------
# The share of a destination segment's traffic a demoted provider keeps, so that its recovery is seen.
# 3 %, not more: the others must take at least 95 % (issue #23), and 5 % would put them at that edge.
ROUTING_PROBE_PERCENT = env_int("ROUTING_PROBE_PERCENT", 3, minimum=0, maximum=50)
# How far back the quality job reads the rollups' minute rows.
ROUTING_QUALITY_LOOKBACK_MINUTES = env_int("ROUTING_QUALITY_LOOKBACK_MINUTES", 10, minimum=2, maximum=180)
# Each figure is taken over the newest minutes holding at least this many messages (fewer: not judged).
ROUTING_QUALITY_MIN_MESSAGES = env_int("ROUTING_QUALITY_MIN_MESSAGES", 20, minimum=5)
# A sent message with no receipt this long after its minute ended counts as silence.
ROUTING_SILENCE_AFTER_SECONDS = env_int("ROUTING_SILENCE_AFTER_SECONDS", 180, minimum=10)
# Costs are stored in micro-units of this currency (ProviderPrice, dispatch_message.cost, `/stats` cost).
COST_CURRENCY = env_str("COST_CURRENCY", "CNY")


# --- Receipts and status callbacks ----------------------------------------------------------------
# A `sent` message without a receipt this long gets a `receipt_timeout` event (once).
RECEIPT_TIMEOUT_SECONDS = env_int("RECEIPT_TIMEOUT_SECONDS", 600, minimum=1)
# Pull-only providers are asked about messages sent at least this long ago, and at most this long ago.
RECEIPT_POLL_DELAY_SECONDS = env_int("RECEIPT_POLL_DELAY_SECONDS", 30, minimum=0)
RECEIPT_POLL_WINDOW_SECONDS = env_int("RECEIPT_POLL_WINDOW_SECONDS", 6 * 3600, minimum=60)
# A message whose last attempt's outcome is unknown (a timeout after the request left) and that its
# provider cannot settle is held this long before it is sent again: a verification code briefly (a
# second code is harmless, a late one is not); any other message for RECEIPT_TIMEOUT_SECONDS, in which
# a receipt settles it (apps/dispatch/delivery/holds.py).
AMBIGUOUS_RESEND_AFTER_VERIFICATION_S = env_int("AMBIGUOUS_RESEND_AFTER_VERIFICATION_S", 5, minimum=0)
# A verification code without a receipt this long after sending is resent once through another provider.
VERIFICATION_FAILOVER_SECONDS = env_int("VERIFICATION_FAILOVER_SECONDS", 30, minimum=1)
# Status callbacks to private/loopback addresses are refused unless this allows them (local runs).
CALLBACK_ALLOW_PRIVATE = env_bool("CALLBACK_ALLOW_PRIVATE", DEV_RUN)

# --- Ports of the default run -----------------------------------------------------------------
PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
FLOWER_PORT = env_int("FLOWER_PORT", 5555, minimum=1, maximum=65535)
SIM_PORT = env_int("SIM_PORT", 8025, minimum=1, maximum=65535)
# Where providers reach us (status callbacks such as Twilio's StatusCallback); no trailing slash.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", f"http://127.0.0.1:{PORT}").rstrip("/")
# Where providers push status reports (`/api/v1/receipts/…`, signed against this URL). `make run` serves
# them from a separate web process at a lower CPU priority, so that a storm of reports cannot slow
# down the send API; behind one address it is simply PUBLIC_BASE_URL.
RECEIPTS_BASE_URL = env_str("RECEIPTS_BASE_URL", PUBLIC_BASE_URL).rstrip("/")
# The provider simulator of the default run (`manage.py configure_simulator_providers` points providers at it).
SIMULATOR_URL = env_str("SIMULATOR_URL", f"http://127.0.0.1:{SIM_PORT}").rstrip("/")

# --- Logging ---------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"Environment variable LOG_LEVEL={LOG_LEVEL!r} is not a logging level.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx (the APNs client) logs every request at INFO: far too much for a delivering worker.
    "loggers": {"django.db.backends": {"level": "INFO"}, "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
