import re

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

ROOM = re.compile(r"[-A-Za-z0-9_]{1,40}")


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """The chat page; ``?room=NAME`` picks the room (default: lobby)."""
    room = request.GET.get("room", "lobby")
    if not ROOM.fullmatch(room):
        room = "lobby"
    return render(request, "chat/index.html", {"room": room})
