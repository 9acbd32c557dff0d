"""An asyncio event loop in a thread of its own, for sync code that talks to NATS.

nats-py is asyncio only, while the relay runs in a plain thread and the gRPC server in a thread pool.
Each NATS user owns one LoopThread: its connection lives on that loop for as long as the owner does,
and sync callers hand it coroutines with ``run``. Nothing starts at construction; the thread starts
on first use, so building a site opens no connection and spawns no thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["LoopStopped", "LoopThread"]

_T = TypeVar("_T")
_GRACE = 1.0  # beyond a run's own timeout, before the caller stops waiting for a stuck loop


class LoopStopped(RuntimeError):
    """``run`` was called after ``stop``: the loop is gone."""


class LoopThread:
    """One event loop in one daemon thread; ``run`` submits coroutines from other threads.

    ``stop`` cancels whatever is still running on the loop, lets it finish its clean-up, closes the
    loop and joins the thread, so tests that turn warnings into errors see no leaked tasks or sockets.
    """

    def __init__(self, name: str = "nats-loop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the thread if it is not running yet; returns the loop. Idempotent."""
        with self._lock:
            if self._stopped:
                raise LoopStopped(f"{self.name} was stopped")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._main, args=(loop, ready), name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the loop and wait for its result; raise what it raised.

        With a timeout the coroutine is cancelled *on the loop* when it runs out (so its ``finally``
        blocks run before this returns) and TimeoutError is raised. Calling this from the loop's own
        thread would deadlock, so it is refused.
        """
        try:
            loop = self.start()
        except LoopStopped:
            coro.close()
            raise
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(f"LoopThread.run called from {self.name} itself: await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(_bounded(coro, timeout), loop)
        try:
            return future.result(None if timeout is None else timeout + _GRACE)
        except TimeoutError:
            if future.done():
                raise  # the coroutine's own TimeoutError (or its timeout running out on the loop)
            future.cancel()  # the loop itself is stuck: stop waiting for it
            raise TimeoutError(f"{self.name}: no result within {timeout}s") from None

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Start ``coro`` on the loop without waiting for it: a background task.

        Cancelling the returned future cancels the task; ``stop`` cancels it too.
        """
        try:
            loop = self.start()
        except LoopStopped:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel pending tasks, close the loop and join the thread. Idempotent."""
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError(f"{self.name} cannot stop itself")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()


async def _bounded(coro: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
    if timeout is None:
        return await coro
    async with asyncio.timeout(timeout):
        return await coro


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
