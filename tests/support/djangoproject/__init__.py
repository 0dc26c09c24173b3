"""A small Django project (admin, auth, sessions) run on channelapp by the tests.

Its SQLite database is the file named by ``DJANGOPROJECT_DB`` (the tests migrate a new
one per session). ``settings`` is the project; the other ``*_settings`` modules are
variants the loader tests start it with.
"""
