from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path

from tests.support.apps import pattern


def big(request: HttpRequest, n: int) -> HttpResponse:
    """``n`` bytes of a pattern: a response larger than one channel-layer message."""
    return HttpResponse(pattern(n), content_type="application/octet-stream")


urlpatterns = [path("admin/", admin.site.urls), path("big/<int:n>/", big)]
