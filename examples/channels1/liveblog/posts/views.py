from django.db.models import Max
from django.shortcuts import get_object_or_404, render

from .models import Liveblog


def index(request):
    """
    Root page view: the liveblogs, the one with the latest post first.
    """
    liveblogs = Liveblog.objects.annotate(max_created=Max("posts__created")).order_by(
        "-max_created"
    )
    return render(request, "index.html", {"liveblogs": liveblogs})


def liveblog(request, slug):
    """
    Shows an individual liveblog page, newest posts first. Its JavaScript keeps it
    updated over a WebSocket.
    """
    blog = get_object_or_404(Liveblog, slug=slug)
    return render(
        request,
        "liveblog.html",
        {"liveblog": blog, "posts": blog.posts.order_by("-created")},
    )
