"""Serving without a lifespan: the service starts itself on first use.

The original service's own tests build ``client = TestClient(app)`` at module level
and never enter it, so no lifespan runs, and a server run with ``lifespan="off"``
is in the same place. Jobs must outlive the request that starts them, so the
service cannot live in a request's event loop (``TestClient`` makes one per
request): on the first request it starts in a thread of its own, with its own
event loop, and stays there until the process exits. Each request is then relayed
to that loop; its ``receive`` and ``send`` are called back in the loop it came from.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, ExitStack
from typing import Any

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StartsOnFirstUse:
    """ASGI middleware: pass through once a lifespan ran; before that, start the
    service's lifespan in a thread of its own and relay every request to it."""

    def __init__(
        self,
        app: ASGIApp,
        lifespan: Callable[[], AbstractAsyncContextManager[Any]],
        running: Callable[[], bool],
    ) -> None:
        """``lifespan`` makes the context that starts and stops the service;
        ``running`` says whether a lifespan (of whatever kind) has it running."""
        self.app = app
        self._lifespan = lifespan
        self._running = running
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Once started here, the service lives in its own loop: every request goes there.
        if self._portal is None and (scope["type"] == "lifespan" or self._running()):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Relaying a WebSocket between two loops hangs (not solved yet): say so
            # rather than leave the client waiting.
            await receive()
            await send(
                {
                    "type": "websocket.close",
                    "code": 1013,
                    "reason": "live progress needs the service started with its lifespan",
                }
            )
            return
        portal = await anyio.to_thread.run_sync(self._start)
        async with BlockingPortal() as here:

            async def relayed_receive() -> Message:
                return await anyio.to_thread.run_sync(here.call, receive)

            async def relayed_send(message: Message) -> None:
                await anyio.to_thread.run_sync(here.call, send, message)

            await anyio.to_thread.run_sync(
                portal.call, self.app, scope, relayed_receive, relayed_send
            )

    def _start(self) -> BlockingPortal:
        """The service's loop, started (once) with the service in it."""
        with self._lock:
            if self._portal is None:
                stack = ExitStack()
                portal = stack.enter_context(start_blocking_portal())
                stack.enter_context(portal.wrap_async_context_manager(self._lifespan()))
                # Jobs still running at exit end interrupted, resumable, as at a shutdown.
                atexit.register(stack.close)
                self._portal = portal
            return self._portal
