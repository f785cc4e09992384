"""The live dashboard of `--sink web`: one aiohttp server per run, on its own thread and event loop.

Routes (every one behind the token when one is set: `?token=` or `Authorization: Bearer`):

- `/`                 the page (`camstream/assets/dashboard.html`): each stream's video, live charts, controls
- `/stream/N.mjpg`    stream N's overlaid video as MJPEG; `/frame/N.jpg` its newest frame
- `/stats`            the live figures as JSON (`LiveControls.stats`); `/events` the same, pushed (SSE)
- `/control`          POST a JSON object of settings to change in the running pipeline (`LiveControls.apply`)

aiohttp (rather than `http.server`) serves every client on one event loop: a watcher costs a coroutine, not a
thread. Streaming clients (video and events together) are bounded by `max_clients`; the next gets a 503.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np
from aiohttp import web

from camstream.errors import CamstreamError
from camstream.progress import LOGGER

PUSH_INTERVAL_S = 0.5  # the events channel's update period: 2 updates a second


class Dashboard:
    """The server; frames come in through `publish` from the render threads, from any thread."""

    def __init__(self, bind: str = "127.0.0.1", port: int = 8080, token: str | None = None, streams: int = 1,
                 max_clients: int = 32, push_interval_s: float = PUSH_INTERVAL_S) -> None:
        self.bind = bind
        self.port = port
        self.token = token
        self.max_clients = max_clients
        self.push_interval_s = push_interval_s
        self.clients = 0  # streaming responses open now (video and events)
        self.watchers = [0] * streams  # video clients per stream
        self.pushes = 0  # events sent, all clients together
        self._frames: list[tuple[int, bytes] | None] = [None] * streams
        self._waiting: list[asyncio.Future | None] = [None] * streams
        self._stats: Callable[[], dict] = dict
        self._control: Callable[[dict], dict] = dict
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._thread: threading.Thread | None = None
        self._ended = False
        self._ended_event: asyncio.Event | None = None
        self._streaming: set[asyncio.Task] = set()  # the open video and events responses

    @property
    def url(self) -> str:
        """The page's address (without the token: this is what reports name)."""
        return f"http://{self.bind}:{self.port}/"

    @property
    def link(self) -> str:
        """The page's address to open, with `?token=` when one is required (what the start line prints)."""
        return self.url + (f"?token={quote(self.token, safe='')}" if self.token is not None else "")

    def start(self, stats: Callable[[], dict], control: Callable[[dict], dict],
              snapshot: Callable[[int], dict | None] | None = None, labels: Callable[[], list[str]] | None = None,
              original: Callable[[int], bytes | None] | None = None) -> None:
        """Bind and serve on a daemon thread; `stats()` gives the live figures, `control(changes)` applies
        settings (a ValueError is the client's mistake: 400 with its message), `snapshot(index)` a stream's
        newest explained frame (facts and raw map), `labels()` the model's class names. Raises a CamstreamError
        when the address cannot be bound."""
        self._stats, self._control = stats, control
        self._snapshot, self._labels = snapshot or (lambda _index: None), labels or list
        self._original = original or (lambda _index: None)
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except Exception as exc:  # noqa: BLE001 - whatever stops the bind is said by the caller, in one line
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                failure.append(CamstreamError(f"cannot serve the dashboard on {self.bind}:{self.port}: {reason}"))
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="camstream-web", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._authorise])
        app.router.add_get("/", self._page)
        app.router.add_get("/stats", self._stats_json)
        app.router.add_get("/events", self._events)
        app.router.add_post("/control", self._apply)
        app.router.add_get(r"/stream/{index:\d+}.mjpg", self._video)
        app.router.add_get(r"/frame/{index:\d+}.jpg", self._frame)
        app.router.add_get("/labels", self._labels_json)
        app.router.add_get(r"/original/{index:\d+}.jpg", self._original_jpeg)
        app.router.add_get(r"/snapshot/{index:\d+}.json", self._snapshot_json)
        app.router.add_get(r"/snapshot/{index:\d+}.png", self._snapshot_png)
        app.router.add_get(r"/snapshot/{index:\d+}/map.png", self._snapshot_map)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        for index in range(len(self._waiting)):
            self._waiting[index] = asyncio.get_running_loop().create_future()
        self._ended_event = asyncio.Event()

    # --- from the render threads ---------------------------------------------------------------------------

    def publish(self, index: int, jpeg: bytes) -> None:
        """Stream `index`'s newest overlaid frame (JPEG); wakes its video clients."""
        latest = self._frames[index]
        self._frames[index] = ((latest[0] + 1) if latest else 0, jpeg)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, index)

    def _wake(self, index: int) -> None:
        waiting, self._waiting[index] = self._waiting[index], asyncio.get_running_loop().create_future()
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def stop(self) -> None:
        """Tell the clients the run ended (the events channel sends `end` with the last figures), let the open
        responses finish (up to a second), then close the server."""
        if self._loop is None or self._thread is None:
            return
        loop, self._loop = self._loop, None
        if not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._end(), loop)
        self._thread.join(timeout=5.0)

    async def _end(self) -> None:
        self._ended = True
        self._ended_event.set()
        for index in range(len(self._waiting)):
            self._wake(index)
        if self._streaming:
            await asyncio.wait(self._streaming, timeout=1.0)
        asyncio.get_running_loop().stop()

    # --- handlers --------------------------------------------------------------------------------------------

    @web.middleware
    async def _authorise(self, request, handler):
        if self.token is not None:
            header = request.headers.get("Authorization", "")
            if request.query.get("token") != self.token and header != f"Bearer {self.token}":
                return web.Response(status=403, text="token required")
        return await handler(request)

    async def _page(self, request):
        page = (resources.files("camstream.assets") / "dashboard.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _stats_json(self, request):
        return web.json_response(self._stats(), headers={"Cache-Control": "no-store"})

    async def _apply(self, request):
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of settings")
            return web.json_response(self._control(changes))
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    def _stream_index(self, request) -> int | None:
        index = int(request.match_info["index"])
        return index if 0 <= index < len(self._frames) else None

    async def _original_jpeg(self, request):
        """Stream N's newest frame before the overlay (encoded on request: nothing is spent when no one looks)."""
        jpeg = await asyncio.get_running_loop().run_in_executor(None, self._original,
                                                                int(request.match_info["index"]))
        if jpeg is None:
            return web.Response(status=404, text="no such stream, or no frame yet")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _labels_json(self, request):
        return web.json_response(self._labels(), headers={"Cache-Control": "max-age=3600"})

    def _taken(self, request) -> dict:
        taken = self._snapshot(int(request.match_info["index"]))
        if taken is None:
            raise web.HTTPNotFound()
        return taken

    async def _snapshot_json(self, request):
        facts = self._taken(request)["facts"]
        return web.json_response(facts, headers={"Content-Disposition": f"attachment; filename=frame-{facts['seq']}"
                                                                        ".json", "Cache-Control": "no-store"})

    async def _snapshot_png(self, request):
        """The newest overlaid frame as a PNG (what the video shows, without the stream's JPEG step)."""
        index = int(request.match_info["index"])
        latest = self._frames[index] if 0 <= index < len(self._frames) else None
        if latest is None:
            return web.Response(status=503, text="no frame yet")
        image = cv2.imdecode(np.frombuffer(latest[1], np.uint8), cv2.IMREAD_COLOR)
        return _png_response(image, f"overlay-{latest[0]}.png")

    async def _snapshot_map(self, request):
        """The newest raw map (cells × cells, values 0..1 as 0..255 grey), as the model made it."""
        cam = self._taken(request)["map"]
        if cam is None:
            return web.Response(status=503, text="no map yet")
        return _png_response(np.clip(np.asarray(cam, np.float32) * 255.0, 0, 255).astype(np.uint8), "map.png")

    async def _frame(self, request):
        index = self._stream_index(request)
        if index is None:
            raise web.HTTPNotFound()
        latest = self._frames[index]
        if latest is None:
            return web.Response(status=503, text="no frame yet")
        return web.Response(body=latest[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _video(self, request):
        index = self._stream_index(request)
        if index is None:
            raise web.HTTPNotFound()
        if self.clients >= self.max_clients:
            return web.Response(status=503, text="too many clients")
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame",
                                               "Cache-Control": "no-store"})
        self.clients += 1
        self.watchers[index] += 1
        self._streaming.add(asyncio.current_task())
        try:
            await response.prepare(request)
            seen = -1
            while not self._ended:
                latest = self._frames[index]
                if latest is None or latest[0] == seen:
                    await asyncio.wait([self._waiting[index]], timeout=1.0)
                    continue
                seen, jpeg = latest
                await response.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            LOGGER.debug("dashboard: a video client of stream %d left (%s)", index, type(exc).__name__)
        finally:
            self.clients -= 1
            self.watchers[index] -= 1
            self._streaming.discard(asyncio.current_task())
        return response

    async def _events(self, request):
        if self.clients >= self.max_clients:
            return web.Response(status=503, text="too many clients")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        self.clients += 1
        self._streaming.add(asyncio.current_task())
        ended = asyncio.ensure_future(self._ended_event.wait())  # one waiter per client, reused every push
        try:
            await response.prepare(request)
            while not self._ended:
                await response.write(f"data: {json.dumps(self._stats())}\n\n".encode())
                self.pushes += 1
                await asyncio.wait([ended], timeout=self.push_interval_s)
            await response.write(f"event: end\ndata: {json.dumps(self._stats())}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            LOGGER.debug("dashboard: an events client left (%s)", type(exc).__name__)
        finally:
            ended.cancel()
            self.clients -= 1
            self._streaming.discard(asyncio.current_task())
        return response


def _png_response(image: np.ndarray, name: str) -> web.Response:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        return web.Response(status=500, text="cannot encode the snapshot")
    return web.Response(body=encoded.tobytes(), content_type="image/png",
                        headers={"Content-Disposition": f"attachment; filename={name}", "Cache-Control": "no-store"})
