from django.conf import settings

NOTIFY_USERS_ON_ENTER_OR_LEAVE_ROOMS = getattr(
    settings, "NOTIFY_USERS_ON_ENTER_OR_LEAVE_ROOMS", True
)

MSG_TYPE_MESSAGE = 0  # For standard messages
MSG_TYPE_WARNING = 1  # For yellow messages
MSG_TYPE_ALERT = 2  # For red & dangerous alerts
MSG_TYPE_MUTED = 3  # For just OK information that doesn't bother users
MSG_TYPE_ENTER = 4  # For a user entering a room
MSG_TYPE_LEAVE = 5  # For a user leaving a room

MESSAGE_TYPES_CHOICES = getattr(
    settings,
    "MESSAGE_TYPES_CHOICES",
    (
        (MSG_TYPE_MESSAGE, "MESSAGE"),
        (MSG_TYPE_WARNING, "WARNING"),
        (MSG_TYPE_ALERT, "ALERT"),
        (MSG_TYPE_MUTED, "MUTED"),
        (MSG_TYPE_ENTER, "ENTER"),
        (MSG_TYPE_LEAVE, "LEAVE"),
    ),
)
