"""The chat socket: logged-in Django users only, every line broadcast to the room."""

from typing import Any

from channelapp.consumers import SyncJsonWebsocketConsumer
from channelapp.django import user_from_headers

LOGIN_REQUIRED = 4003  # close code of a socket without a logged-in user
MAX_TEXT = 2000


class ChatConsumer(SyncJsonWebsocketConsumer):
    """Handlers are plain ``def``: they run in the worker's threads, where the ORM may be used.

    Only the connect message carries the cookie, so the user's name is kept in the
    socket's session for the messages that follow.
    """

    @property
    def group(self) -> str:
        return f"chat.{self.kwargs['room']}"

    def connect(self) -> None:
        user = user_from_headers(self.message["headers"])
        self.accept()
        if not user.is_authenticated:
            self.close(LOGIN_REQUIRED)  # the page sends the browser to the login form
            return
        assert self.session is not None
        self.session["username"] = user.get_username()
        self.group_add(self.group)

    def receive_json(self, content: Any) -> None:
        assert self.session is not None
        username = self.session.get("username")
        if username is None:
            self.close(LOGIN_REQUIRED)
            return
        text = content.get("text") if isinstance(content, dict) else None
        if not isinstance(text, str) or not text.strip():
            self.send_json({"error": 'send {"text": "..."}'})
            return
        self.group_send_json(self.group, {"message": f"{username}: {text.strip()[:MAX_TEXT]}"})

    def disconnect(self, code: int) -> None:
        assert self.session is not None
        if self.session.get("username") is not None:
            self.group_discard(self.group)
