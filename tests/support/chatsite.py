"""The Django example examples/django/chatsite from a client's side: its users, and logging in
through its login form as a browser does (csrftoken cookie, form token, Origin)."""

from __future__ import annotations

import re

import aiohttp

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
USERS = {"ann": "ann-password-1", "bob": "bob-password-1"}


async def log_in(http: aiohttp.ClientSession, site: str, username: str) -> str:
    """Log ``username`` in on ``http`` (a cookie jar that accepts IP hosts); its sessionid."""
    async with http.get(f"{site}/") as r:  # @login_required sends us to the form
        assert str(r.url) == f"{site}/accounts/login/?next=/", r.url
        token = CSRF_FIELD.search(await r.text())
    assert token is not None
    async with http.post(
        f"{site}/accounts/login/",
        data={
            "username": username,
            "password": USERS[username],
            "csrfmiddlewaretoken": token.group(1),
            "next": "/",
        },
        headers={"Origin": site},
        allow_redirects=False,
    ) as r:
        assert r.status == 302 and r.headers["Location"] == "/", await r.text()
        sessionid: str = r.cookies["sessionid"].value
    async with http.get(f"{site}/?room=lobby") as r:
        page = await r.text()
        assert r.status == 200 and "<h1>Room lobby</h1>" in page
        assert f'<strong id="username">{username}</strong>' in page
    return sessionid
