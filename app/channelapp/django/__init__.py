"""Django projects on channelapp: ``channelapp worker django:mysite.settings``.

:mod:`channelapp.django.loader` builds a channelapp App from a Django settings module
(``CHANNELAPP_ROUTING``, then Django's views for every other HTTP path);
:mod:`channelapp.django.auth` reads the Django user from a message's session cookie.
Nothing here imports Django until it is called, so ``import channelapp`` never needs it.
"""

from channelapp.django.auth import get_user, session_from_headers, user_from_headers
from channelapp.django.loader import load_django_app

__all__ = ["get_user", "load_django_app", "session_from_headers", "user_from_headers"]
