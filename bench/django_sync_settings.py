"""``django:bench.django_sync_settings``: bench.sync_http's Django project on channelapp.

The smallest project that serves the daphne + Django baseline's view (the same
``work_view``, bench/django_sync_urls.py): no database, no contrib apps, no middleware
(the baseline's ``settings.configure`` sets none either), no CHANNELAPP_ROUTING, so
Django's ASGI handler, mounted at "/" on the workers, answers ``/work``.
"""

DEBUG = False
SECRET_KEY = "bench"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.django_sync_urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
