import json

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return render(request, "chat/index.html")


def room(request, room_name):
    return render(request, "chat/room.html", {"room_name": room_name})


@csrf_exempt
def thumbnails(request):
    """POST {"ids": [...], "seconds": 0.2}: one job per id on the ``thumbnails`` channel."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    job = json.loads(request.body or b"{}")
    channel_layer = get_channel_layer()
    for job_id in job.get("ids", []):
        async_to_sync(channel_layer.send)(
            "thumbnails",
            {
                "type": "thumbnail.make",
                "id": str(job_id),
                "seconds": float(job.get("seconds", 0.05)),
                "reply_to": job.get("reply_to", "thumbnails.done"),
            },
        )
    return JsonResponse({"queued": len(job.get("ids", []))})
