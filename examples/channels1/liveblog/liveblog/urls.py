from django.contrib import admin
from django.urls import re_path
from posts.views import index, liveblog

urlpatterns = [
    re_path(r"^$", index),
    re_path(r"^liveblog/(?P<slug>[^/]+)/$", liveblog),
    re_path(r"^admin/", admin.site.urls),
]
