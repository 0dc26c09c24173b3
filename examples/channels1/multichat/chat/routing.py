from channelapp.compat import route

from .consumers import chat_join, chat_leave, chat_send, ws_connect, ws_disconnect, ws_receive

# There's no path matching on these routes; we rely on the matching from the top-level
# routing.
websocket_routing = [
    # Called when WebSockets connect
    route("websocket.connect", ws_connect),
    # Called when WebSockets get sent a data frame
    route("websocket.receive", ws_receive),
    # Called when WebSockets disconnect
    route("websocket.disconnect", ws_disconnect),
]

# Handling different chat commands (websocket.receive is decoded and put onto this
# channel) - routed on the "command" attribute of the decoded message.
custom_routing = [
    route("chat.receive", chat_join, command="^join$"),
    route("chat.receive", chat_leave, command="^leave$"),
    route("chat.receive", chat_send, command="^send$"),
]
