"""ASGI apps that test processes load: ``tests.support.asgi_apps:starlette``.

The Starlette app appends ``<event> <pid>`` to the file named by ``LIFESPAN_LOG`` on
lifespan startup and shutdown, and answers with its process id and a sync-view result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from channelapp.application import App
from channelapp.routing import mount
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _log(event: str) -> None:
    with open(os.environ["LIFESPAN_LOG"], "a") as log:
        log.write(f"{event} {os.getpid()}\n")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    _log("startup")
    yield
    _log("shutdown")


async def _whoami(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"pid": os.getpid(), "length": len(body)})


starlette = App(
    [
        mount(
            "/",
            Starlette(
                routes=[Route("/whoami", _whoami, methods=["GET", "POST"])], lifespan=_lifespan
            ),
        )
    ]
)


async def _refuses_to_start(scope: dict[str, object], receive: object, send: object) -> None:
    assert scope["type"] == "lifespan"
    await receive()  # type: ignore[operator]
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})  # type: ignore[operator]


failing_lifespan = App([mount("/", _refuses_to_start)])
