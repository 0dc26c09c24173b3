from channelapp.routing import path

from chatsite.consumers import ChatConsumer

routes = [path("/ws/chat/<slug:room>/", ChatConsumer, protocol="websocket")]
