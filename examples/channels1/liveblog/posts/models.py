import json

from channelapp.compat import Group
from django.db import models
from django.template.defaultfilters import linebreaks_filter


class Liveblog(models.Model):
    """
    A liveblog - a collection of posts under a title, like the event name that's
    being blogged.
    """

    title = models.CharField(max_length=255)

    # Slug for routing (both HTML pages and WebSockets)
    slug = models.SlugField()

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return f"/liveblog/{self.slug}/"

    @property
    def group_name(self):
        """
        Returns the Channels Group name to use for sending notifications.
        """
        return f"liveblog-{self.id}"


class Post(models.Model):
    """
    A single post in a liveblog; they're shown newest first, and new ones appear at the
    top of the page as they're posted.
    """

    liveblog = models.ForeignKey(Liveblog, related_name="posts", on_delete=models.CASCADE)

    # Body content of this post, shown with the linebreaks filter run on it.
    body = models.TextField()

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"#{self.id}: {self.body_intro()}"

    def body_intro(self):
        return self.body[:50]

    def html_body(self):
        return linebreaks_filter(self.body)

    def send_notification(self):
        """
        Sends a notification to everyone in our Liveblog's group with our content.
        """
        notification = {
            "id": self.id,
            "html": self.html_body(),
            "created": self.created.strftime("%a %d %b %Y %H:%M"),
        }
        # Send that to the whole Group for our liveblog, as a WebSocket text frame of
        # JSON. You can send to a channel or Group from any part of Django, not just
        # inside a consumer.
        Group(self.liveblog.group_name).send({"text": json.dumps(notification)})

    def save(self, *args, **kwargs):
        """
        Hooking send_notification into the save of the object.
        """
        result = super().save(*args, **kwargs)
        self.send_notification()
        return result
