"""Django settings. Production differs from development only by environment variables.

Every variable is documented in README.md and .env.example. With `DJANGO_DEBUG` off (the default) the
project refuses to start without a real `DJANGO_SECRET_KEY` and turns on every transport-security
setting that `manage.py check --deploy` asks for.
"""

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config.env import BASE_DIR, env
from config.ratelimit import parse_rate

# --- Core -----------------------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=False)

_DEV_ONLY_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production (DJANGO_DEBUG off) needs a long random secret key; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = _DEV_ONLY_SECRET_KEY
if not DEBUG and (
    SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5
):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is too weak for production: use at least 50 random characters "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "messaging",
    "messaging.automations",
    "templates_app",
    "compliance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serves one writer at a time; WAL and a busy timeout keep the embedded default usable with
    # the simulator posting webhooks while the admin is in use.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, locks, rate limiting (Redis when REDIS_URL is set, in-process otherwise) --------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="wa"),
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "wa-default"}
    }

# --- Celery (tasks run in-process when no broker is configured) -----------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# The queue tasks are sent to (and a worker without -Q consumes): lets runs sharing one broker stay apart.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Keep workers' database connections between tasks (config/celery.py: CONN_MAX_AGE and health checks
# still apply); Celery's default closes them around every task.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# Periodic tasks, run by `celery -A config beat` (one beat process per deployment).
CELERY_BEAT_SCHEDULE = {
    # Mirror Meta's template statuses, quality and categories; webhooks usually arrive first, this
    # catches the ones that did not. The task skips a run while the previous one is still going.
    "templates-sync": {"task": "templates_app.tasks.sync_templates", "schedule": 15 * 60},
    # Enqueue due messages (deferred, retried, orphaned) and settle sends abandoned by dead workers.
    "messages-dispatch-due": {"task": "messaging.tasks.dispatch_due_messages", "schedule": 30},
    # The admin dashboard's figures per day (messaging.dashboard): today's and yesterday's every minute.
    "dashboard-refresh": {"task": "messaging.tasks.refresh_dashboard", "schedule": 60},
    # Tell compliance officers each morning what is overdue or due soon (legal deadlines): 14:00 UTC is
    # early morning in California and mid-morning on the East Coast.
    "privacy-deadline-reminders": {
        "task": "compliance.tasks.remind_privacy_deadlines",
        "schedule": crontab(hour=14, minute=0),
    },
}

# --- Auth, i18n, static ---------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Uploaded files (an authorized agent's proof of authority). Not served publicly: staff download them
# through the admin only.
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=BASE_DIR / "media")
MEDIA_URL = "media/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production: DEBUG off) -------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# How many reverse proxies (load balancer, nginx, ...) stand in front of the app, each appending the
# client address to X-Forwarded-For. 0 (default): trust only REMOTE_ADDR, since anyone can send the
# header. Rate limits and consent evidence use the address this yields (config/ratelimit.py).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Logging: phone numbers and tokens never reach a log line -------------------------------------

LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_pii": {"()": "config.logging.RedactPIIFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_pii"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}

# --- REST API -------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "messaging.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Consent-first WhatsApp messaging API",
    "DESCRIPTION": "Contacts, messages, consent and privacy requests. Authenticate with "
    "`Authorization: Bearer <token>` (create one with `python manage.py create_api_token USERNAME`).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- WhatsApp -------------------------------------------------------------------------------------

WHATSAPP = {
    "BACKEND": env.str("WHATSAPP_BACKEND", default="cloud"),
    "GRAPH_URL": env.str("WHATSAPP_GRAPH_URL", default="https://graph.facebook.com").rstrip("/"),
    "API_VERSION": env.str("WHATSAPP_API_VERSION", default="v23.0"),
    "ACCESS_TOKEN": env.str("WHATSAPP_ACCESS_TOKEN", default=""),
    "PHONE_NUMBER_ID": env.str("WHATSAPP_PHONE_NUMBER_ID", default=""),
    "DISPLAY_PHONE_NUMBER": env.str("WHATSAPP_DISPLAY_PHONE_NUMBER", default=""),
    "BUSINESS_ACCOUNT_ID": env.str("WHATSAPP_BUSINESS_ACCOUNT_ID", default=""),
    "APP_SECRET": env.str("WHATSAPP_APP_SECRET", default=""),
    "VERIFY_TOKEN": env.str("WHATSAPP_VERIFY_TOKEN", default=""),
    "MESSAGES_PER_SECOND": env.int("WHATSAPP_MESSAGES_PER_SECOND", default=80),
    "CONNECT_TIMEOUT": env.float("WHATSAPP_CONNECT_TIMEOUT", default=5.0),
    "READ_TIMEOUT": env.float("WHATSAPP_READ_TIMEOUT", default=30.0),
    # Where the simulator posts its signed status and reply webhooks (the app's own endpoint).
    "SIMULATOR_WEBHOOK_URL": env.str(
        "WHATSAPP_SIMULATOR_WEBHOOK_URL", default="http://127.0.0.1:8000/webhooks/whatsapp/"
    ),
    "SIMULATOR_STATUS_DELAY": env.float("WHATSAPP_SIMULATOR_STATUS_DELAY", default=1.0),
}
# Requests to Meta one worker process keeps in flight (its send thread pool and HTTP connection pool).
WHATSAPP_SEND_THREADS = env.int("WHATSAPP_SEND_THREADS", default=32)
# What Meta charges per billable message, by pricing category, in USD: "marketing=0.025,utility=0.004".
# Only the dashboard's cost estimate reads it; empty: the dashboard shows counts and says so.
WHATSAPP_PRICE_PER_MESSAGE = env.dict("WHATSAPP_PRICE_PER_MESSAGE", default={})

# Region used to read phone numbers typed without a country code, e.g. "(555) 012-3456".
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="US")

# --- Consent and compliance -----------------------------------------------------------------------

# Fernet key (32 url-safe base64 bytes) that wraps every person's evidence key in the consent ledger.
#   python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'
# Development derives one from DJANGO_SECRET_KEY; production must set it (and never lose it).
CONSENT_ENCRYPTION_KEY = env.str("CONSENT_ENCRYPTION_KEY", default="")
if not DEBUG and not CONSENT_ENCRYPTION_KEY:
    raise ImproperlyConfigured(
        "CONSENT_ENCRYPTION_KEY is not set. Production needs a dedicated key for the consent ledger's evidence: "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )
# Double opt-in: web-form consent becomes active only when the customer confirms on WhatsApp.
CONSENT_DOUBLE_OPT_IN = env.bool("CONSENT_DOUBLE_OPT_IN", default=False)
# Marketing goes out only between these recipient-local hours (24 h clock, end exclusive).
CONSENT_QUIET_HOURS_START = env.int("CONSENT_QUIET_HOURS_START", default=8)
CONSENT_QUIET_HOURS_END = env.int("CONSENT_QUIET_HOURS_END", default=21)
# At most this many marketing messages per contact per rolling CONSENT_FREQUENCY_CAP_DAYS (0: no cap).
CONSENT_MARKETING_FREQUENCY_CAP = env.int("CONSENT_MARKETING_FREQUENCY_CAP", default=0)
CONSENT_FREQUENCY_CAP_DAYS = env.int("CONSENT_FREQUENCY_CAP_DAYS", default=7)
# Public opt-in form: submissions allowed per client IP, as hits/period ("5/10m", "20/h", "3/60").
CONSENT_FORM_RATE_LIMIT = env.str("CONSENT_FORM_RATE_LIMIT", default="5/10m")
parse_rate(CONSENT_FORM_RATE_LIMIT)  # refuse to start with a malformed value
# Submissions of the public privacy request page per client IP (counted apart from the opt-in form).
PRIVACY_FORM_RATE_LIMIT = env.str("PRIVACY_FORM_RATE_LIMIT", default="5/10m")
parse_rate(PRIVACY_FORM_RATE_LIMIT)

# --- Keywords, automatic replies, double opt-in confirmation (messaging/keywords.py) ---------------

# The business's name in the texts below ("{business}"); empty: the current consent text's name.
WHATSAPP_BUSINESS_NAME = env.str("WHATSAPP_BUSINESS_NAME", default="")
# Answers to the keywords people send. Empty: the built-in wording (messaging/keywords.py DEFAULT_TEXTS).
WHATSAPP_HELP_TEXT = env.str("WHATSAPP_HELP_TEXT", default="")
WHATSAPP_OPT_OUT_CONFIRMATION_TEXT = env.str("WHATSAPP_OPT_OUT_CONFIRMATION_TEXT", default="")
WHATSAPP_OPT_IN_CONFIRMATION_TEXT = env.str("WHATSAPP_OPT_IN_CONFIRMATION_TEXT", default="")
WHATSAPP_DOUBLE_OPT_IN_CONFIRMED_TEXT = env.str("WHATSAPP_DOUBLE_OPT_IN_CONFIRMED_TEXT", default="")
# The approved template (name and language) asking a double opt-in's person to confirm; its first
# quick-reply button confirms. Unset or not approved: staff get an alert and nothing is sent.
CONSENT_DOUBLE_OPT_IN_TEMPLATE = env.str("CONSENT_DOUBLE_OPT_IN_TEMPLATE", default="")
CONSENT_DOUBLE_OPT_IN_TEMPLATE_LANGUAGE = env.str("CONSENT_DOUBLE_OPT_IN_TEMPLATE_LANGUAGE", default="en_US")

# --- Email (template status notices to staff) ------------------------------------------------------

# Development prints mail to the console; production sends through SMTP (EMAIL_HOST etc.).
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="whatsapp-platform@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- Privacy requests (CCPA/CPRA) -------------------------------------------------------------------

# Deadlines count days in the business's own time zone; business days skip weekends, US federal
# holidays and these extra dates (ISO, e.g. 2026-03-31 for Cesar Chavez Day).
PRIVACY_TIME_ZONE = env.str("PRIVACY_TIME_ZONE", default="America/Los_Angeles")
PRIVACY_EXTRA_HOLIDAYS = env.list("PRIVACY_EXTRA_HOLIDAYS", default=[])
# The approved AUTHENTICATION template carrying a verification code (one body parameter, the code).
# Without it the code goes as a free-form text, which Meta only delivers inside the 24-hour window;
# staff can always verify manually instead.
PRIVACY_VERIFICATION_TEMPLATE = env.str("PRIVACY_VERIFICATION_TEMPLATE", default="privacy_verification_code")
PRIVACY_CODE_TTL_MINUTES = env.int("PRIVACY_CODE_TTL_MINUTES", default=15)
# Where consumers can reach the privacy team (shown on the public page and in notices).
PRIVACY_CONTACT_EMAIL = env.str("PRIVACY_CONTACT_EMAIL", default=DEFAULT_FROM_EMAIL)
# The regulations ask for two years of request records; keep them at least that long.
PRIVACY_RECORD_RETENTION_DAYS = max(env.int("PRIVACY_RECORD_RETENTION_DAYS", default=730), 730)
