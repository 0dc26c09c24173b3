from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(r"ws/chat/(?P<room_name>\w+)/$", consumers.ChatConsumer.as_asgi()),
    # The tutorial's first, synchronous version of the same consumer.
    re_path(r"ws/syncchat/(?P<room_name>\w+)/$", consumers.SyncChatConsumer.as_asgi()),
]
