from channelapp.routing import path

from tests.support.djangoproject.consumers import AsyncWhoAmI, WhoAmI, orm

routes = [
    path("/ws/whoami/", WhoAmI, protocol="websocket"),
    path("/ws/whoami-async/", AsyncWhoAmI, protocol="websocket"),
    path("/orm/", orm, protocol="http"),
]
not_a_list = {"path": "/ws/whoami/"}
not_routes = ["/ws/whoami/"]
