"""The bytes of an append's media, gathered so that one client's slow URLs cannot delay anyone else.

http(s) URLs are downloaded on the event loop with ``httpx.AsyncClient``: a download that waits costs a
socket, not a thread, and cancelling it (its stream is deleted, a deadline passes) closes the socket at
once, where a download in a worker thread could only be abandoned, keeping its thread until its socket
timeout. Downloads are bounded per server and per stream, each URL has a total deadline (a socket timeout
alone never cuts a URL that trickles a byte every few seconds), all the media of one append has one too,
and the append's bytes are capped as a whole. No connection is kept alive for reuse: media hosts are
arbitrary, and a pooled connection the far side has since closed fails the next download on it. ``data:`` URLs and local files are read in the executor the
caller gives (base64 of tens of MiB is CPU work the event loop must not do).

Engine-free: it knows URLs, bytes and stream ids, nothing of the streams themselves.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Executor
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

from sglang_hermes.media import MediaError, load_url


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int              # all media of one append together
    url_deadline: float         # seconds one http(s) URL may take, connection to last byte
    append_deadline: float      # seconds all media of one append may take to arrive
    server_fetches: int         # http(s) downloads at once on the server
    stream_fetches: int         # http(s) downloads at once for one stream
    allow_local: bool = False   # local paths and file:// URLs


class FetchTimeout(MediaError):
    """A deadline passed before the media arrived: 504, as a gateway whose upstream did not answer."""

    def __init__(self, message: str):
        super().__init__(message, status=504, code="media_fetch_timeout")


class FetchCancelled(Exception):
    """The stream's fetches were cancelled (``cancel_stream``) while this one was pending."""


@dataclass
class _StreamFetches:
    slots: asyncio.Semaphore
    tasks: set[asyncio.Task] = field(default_factory=set)


class _Budget:
    """Bytes one append may still receive, shared by its parts while they download side by side."""

    def __init__(self, limit: int):
        self.limit = limit
        self.left = limit

    def take(self, n: int, url: str) -> None:
        self.left -= n
        if self.left < 0:
            self.refuse(url)

    def refuse(self, url: str):
        raise MediaError(f"the append's media is larger than the {self.limit}-byte limit "
                         f"(reached with {_short(url)})", status=413)


class MediaFetcher:
    def __init__(self, limits: FetchLimits, executor: Executor):
        self.limits = limits
        self._executor = executor
        self._server_slots = asyncio.Semaphore(limits.server_fetches)
        self._streams: dict[str, _StreamFetches] = {}
        self._client = httpx.AsyncClient(follow_redirects=True, timeout=limits.url_deadline,
                                         limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))

    async def fetch(self, stream_id: str, urls: list[str]) -> list[bytes]:
        """The bytes behind each URL, in order. Raises ``MediaError`` (refused or failed media, a
        ``FetchTimeout`` past a deadline) or ``FetchCancelled`` if ``cancel_stream`` stopped it."""
        stream = self._streams.setdefault(stream_id, _StreamFetches(asyncio.Semaphore(self.limits.stream_fetches)))
        task = asyncio.ensure_future(self._append_media(urls, stream.slots))
        stream.tasks.add(task)
        try:
            await asyncio.wait({task})
            if task.cancelled():
                raise FetchCancelled(stream_id)
            return task.result()
        finally:
            task.cancel()  # the caller itself was cancelled: stop the downloads with it
            stream.tasks.discard(task)
            if not stream.tasks and self._streams.get(stream_id) is stream:
                del self._streams[stream_id]

    def cancel_stream(self, stream_id: str) -> None:
        """Stop every pending fetch of a stream; each caller gets ``FetchCancelled``."""
        stream = self._streams.pop(stream_id, None)
        for task in stream.tasks if stream else ():
            task.cancel()

    async def _append_media(self, urls: list[str], stream_slots: asyncio.Semaphore) -> list[bytes]:
        budget = _Budget(self.limits.max_bytes)
        parts = [asyncio.ensure_future(self._one(url, budget, stream_slots)) for url in urls]
        try:
            async with asyncio.timeout(self.limits.append_deadline):
                return await asyncio.gather(*parts)
        except TimeoutError:
            late = next((url for url, part in zip(urls, parts) if part.cancelled()), urls[-1])
            raise FetchTimeout(f"the append's media did not arrive within its {self.limits.append_deadline:g} s "
                               f"deadline (--hermes-append-deadline); still waiting for {_short(late)}") from None
        finally:
            for part in parts:  # the first failure ends the append: stop its other downloads...
                part.cancel()
            if parts:  # ...and let them close their sockets and free their slots first
                await asyncio.wait(parts)

    async def _one(self, url: str, budget: _Budget, stream_slots: asyncio.Semaphore) -> bytes:
        if not _is_remote(url):
            read = functools.partial(load_url, url, max_bytes=max(budget.left, 0), allow_local=self.limits.allow_local)
            data = await asyncio.get_running_loop().run_in_executor(self._executor, read)
            budget.take(len(data), url)
            return data
        async with stream_slots, self._server_slots:
            try:
                async with asyncio.timeout(self.limits.url_deadline):
                    return await self._download(url, budget)
            except (TimeoutError, httpx.TimeoutException):
                raise FetchTimeout(f"fetching {_short(url)} did not finish within its {self.limits.url_deadline:g} s "
                                   f"deadline (--hermes-fetch-deadline)") from None

    async def _download(self, url: str, budget: _Budget) -> bytes:
        try:
            async with self._client.stream("GET", url) as r:
                if r.status_code != 200:
                    raise MediaError(f"fetching {_short(url)} failed with HTTP {r.status_code}")
                declared = r.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > budget.left:
                    budget.refuse(url)  # before reading a byte
                out = bytearray()
                async for piece in r.aiter_bytes():
                    budget.take(len(piece), url)
                    out += piece
                return bytes(out)
        except httpx.TimeoutException:
            raise  # a deadline, answered by the caller
        except httpx.HTTPError as e:
            raise MediaError(f"fetching {_short(url)} failed: {e}") from None


def _is_remote(url: str) -> bool:
    return isinstance(url, str) and urlparse(url).scheme in ("http", "https")


def _short(url: str, keep: int = 200) -> str:
    """A URL for an error message (a client's URL can be very long; a data: URL is all payload)."""
    if url.startswith("data:"):
        return "a data: URL"
    return url if len(url) <= keep else url[:keep] + "..."
