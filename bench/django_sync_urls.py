"""The Django view of bench.sync_http: ``/work`` blocks for ``BENCH_WORK_MS`` ms.

Both Django rows serve it: daphne + Django (bench/daphne_apps.py) and channelapp's
workers through ``django:bench.django_sync_settings``.
"""

from __future__ import annotations

import os
import time

from django.http import HttpRequest, HttpResponse
from django.urls import path

WORK_SECONDS = float(os.environ.get("BENCH_WORK_MS", "10")) / 1000


def work_view(request: HttpRequest) -> HttpResponse:
    """A plain sync view: Django's ASGI handler runs it with sync_to_async(thread_sensitive)
    inside a per-request ThreadSensitiveContext."""
    time.sleep(WORK_SECONDS)
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("work", work_view)]
