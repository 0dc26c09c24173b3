from channelapp.compat import route, route_class

from tests.app.compat.channels1project.consumers import (
    HttpUser,
    both_connect,
    both_receive,
    stream,
    user_connect,
    user_receive,
    whoami,
)

channel_routing = [
    route("http.request", whoami, path=r"^/whoami/$"),
    route("http.request", stream, path=r"^/stream/$"),
    route("websocket.connect", user_connect, path=r"^/user/$"),
    route("websocket.receive", user_receive, path=r"^/user/$"),
    route("websocket.connect", both_connect, path=r"^/both/$"),
    route("websocket.receive", both_receive, path=r"^/both/$"),
    route_class(HttpUser, path=r"^/generic/$"),
]
