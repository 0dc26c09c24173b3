from django.contrib import admin

from .models import Liveblog, Post

admin.site.register(
    Liveblog,
    list_display=["title", "slug"],
    prepopulated_fields={"slug": ("title",)},
)
admin.site.register(
    Post,
    list_display=["liveblog", "created", "body_intro"],
)
