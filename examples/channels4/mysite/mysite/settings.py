"""mysite: the Channels 4 tutorial's project (a chat in rooms), plus a background channel.

Run it as the tutorial does (``daphne mysite.asgi:application`` or ``manage.py runserver``
with daphne installed), or under channelapp, unchanged::

    channelapp asgi mysite.asgi:application                 # HTTP and WebSockets
    channelapp runworker mysite.asgi:application thumbnails # the background channel

With ``CHANNELAPP_REDIS_URLS`` set (the operator sets it on its pods) channelapp points
``CHANNEL_LAYERS["default"]`` at those Redis shards; this file is not edited for it.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-mysite-development-only")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "chat",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
WSGI_APPLICATION = "mysite.wsgi.application"
ASGI_APPLICATION = "mysite.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MYSITE_DATABASE", str(BASE_DIR / "db.sqlite3")),
        # A file: ChannelsLiveServerTestCase's server runs in another process.
        "TEST": {"NAME": os.environ.get("MYSITE_TEST_DATABASE", str(BASE_DIR / "test.sqlite3"))},
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The tutorial's channel layer (channels_redis on a local Redis). Under channelapp with
# CHANNELAPP_REDIS_URLS set, "default" is replaced by channelapp's layer on those shards.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [("127.0.0.1", 6379)]},
    },
}
