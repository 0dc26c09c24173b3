from chat.views import index
from django.contrib import admin
from django.contrib.auth.views import LoginView, LogoutView
from django.urls import re_path

urlpatterns = [
    re_path(r"^$", index),
    re_path(r"^accounts/login/$", LoginView.as_view()),
    re_path(r"^accounts/logout/$", LogoutView.as_view()),
    re_path(r"^admin/", admin.site.urls),
]
