from channelapp.compat import route
from posts.consumers import connect_blog, disconnect_blog, save_post

# The channel routing defines what channels get handled by what consumers, including
# optional matching on message attributes. WebSocket messages of all types have a 'path'
# attribute, so we're using that to route the socket; the named group becomes the
# consumers' "slug" keyword argument.
channel_routing = [
    # Called when incoming WebSockets connect
    route("websocket.connect", connect_blog, path=r"^/liveblog/(?P<slug>[^/]+)/stream/$"),
    # Called when the client closes the socket
    route("websocket.disconnect", disconnect_blog, path=r"^/liveblog/(?P<slug>[^/]+)/stream/$"),
    # Called when the client sends a message on the WebSocket
    route("websocket.receive", save_post, path=r"^/liveblog/(?P<slug>[^/]+)/stream/$"),
    # Every HTTP request goes to Django's views (nothing here routes http.request).
]
