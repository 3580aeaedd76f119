"""The emulator's server: one asyncio event loop on a background thread, serving HTTP/1.1
(`transport`) into the Stripe pipeline (`pipeline`), plus in-process control for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import EmulatorConfig
from .pipeline import Emulator
from .transport import serve_connection


class EmulatorServer:
    """Serve the emulator on 127.0.0.1 from a background thread running one asyncio loop."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.host = host
        self.port = port
        self._emu: Emulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._saver: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="stripe-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._emu = Emulator(self.config, self.clock)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, self.host, self.port, backlog=1024, reuse_address=True)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._saver = loop.create_task(self._save_periodically())
        except BaseException as e:
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    async def _shutdown(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._emu is not None:
            self._emu.save_if_dirty()

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._emu is not None:
                self._emu.save_if_dirty()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- in-process control (runs on the loop thread, like every request) -------------------

    def _call(self, fn: Callable[[Emulator], Any]) -> Any:
        if self._loop is None or self._emu is None:
            raise RuntimeError("the emulator is not running")
        emu = self._emu

        async def run() -> Any:
            return fn(emu)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def inspect(self) -> dict[str, Any]:
        return self._call(lambda e: json.loads(json.dumps(e.inspect())))

    def objects(self) -> dict[str, Any]:
        return self._call(lambda e: json.loads(json.dumps(e.objects())))

    def wait_for_writes(self, n: int, timeout: float) -> int:
        """Block until the emulator has applied at least `n` writes since it started (or was reset),
        or `timeout` seconds pass; the number applied. Waits on the write itself, never on a clock
        window, so a loaded machine only makes it later, not wrong."""
        emu = self._emu
        if emu is None:
            raise RuntimeError("the emulator is not running")
        with emu.write_signal:
            emu.write_signal.wait_for(lambda: emu.writes_done >= n, timeout)
            return emu.writes_done

    def requests_log(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call(lambda e: [dict(x) for x in e.requests_log(since)])

    def reset(self) -> None:
        self._call(lambda e: e.reset())

    def configure(self, **changes: Any) -> EmulatorConfig:
        cfg = self._call(lambda e: e.configure(**changes))
        self.config = cfg
        return cfg

    # -- connections ------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        emu = self._emu
        assert emu is not None
        emu.stats.connections_opened += 1
        self._writers.add(writer)
        try:
            await serve_connection(reader, writer, emu.handle)
        finally:
            self._writers.discard(writer)
