import json

from channelapp.compat import Group

from .models import Liveblog, Post


# The "slug" keyword argument here comes from the regex capture group in routing.py.
def connect_blog(message, slug):
    """
    When the user opens a WebSocket to a liveblog stream, adds them to the group for
    that stream so they receive new post notifications.

    The notifications are actually sent in the Post model on save.
    """
    try:
        liveblog = Liveblog.objects.get(slug=slug)
    except Liveblog.DoesNotExist:
        # Sending text first accepts the socket; "close" then closes it, so the client
        # gets the error before the socket goes.
        message.reply_channel.send(
            {
                "text": json.dumps({"error": "bad_slug"}),
                "close": True,
            }
        )
        return
    message.reply_channel.send({"accept": True})
    # Each client has its own "reply_channel", which is how you send information back
    # to them. We add them all to one Group; a send to the group reaches every one.
    Group(liveblog.group_name).add(message.reply_channel)


def disconnect_blog(message, slug):
    """
    Removes the user from the liveblog group when they disconnect.
    """
    try:
        liveblog = Liveblog.objects.get(slug=slug)
    except Liveblog.DoesNotExist:
        # This is the disconnect message, so the socket is already gone.
        return
    # It's called .discard() because it doesn't fail if the channel isn't there,
    # just like the set() type.
    Group(liveblog.group_name).discard(message.reply_channel)


def save_post(message, slug):
    """
    Saves a new post sent over the socket to the database.
    """
    post = json.loads(message["text"])["post"]
    liveblog = Liveblog.objects.get(slug=slug)
    Post.objects.create(liveblog=liveblog, body=post)
