"""The buffering front: the public port, with request heads read by an event loop, never by a
worker thread.

Started by `pushgate serve` as a process of its own. gunicorn's gthread workers read a request's
head on a worker thread, so 8 connections that send their headers slowly held every thread of
the remote (and a legitimate `git ls-remote` timed out): gunicorn's documentation prescribes a
buffering proxy in front. This is one, in asyncio (no thread per connection): a connection gets
`head_timeout` seconds to send its whole request head (at most `MAX_HEAD` bytes), else it is
answered 408 (or 431) and closed; only a complete head is handed to gunicorn, which listens on a
Unix socket in the run dir, private to this pod. The request is forwarded with `Connection:
close` and the client's address (`X-Pushgate-Client`, set here, never taken from the client),
then bytes are piped both ways until gunicorn has answered: its body deadline still bounds a
slow body, and a long `-o wait` answer streams through. A connection that sends nothing for
`idle_timeout` while its body is read is closed. At most `max_backend` requests are with
gunicorn at once (the others wait here, holding no thread).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Plain HTTP only (TLS ends before the pod): asyncio without ssl is 4 MB less of the
    # server's memory (bench/RESULTS.md, rss).
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]

import argparse
import asyncio  # after the ssl stub
import contextlib
import logging
import signal

log = logging.getLogger("pushgate.front")

MAX_HEAD = 64 * 1024
CLIENT_HEADER = b"x-pushgate-client"
_HOP = {b"connection", b"keep-alive", b"proxy-connection", CLIENT_HEADER}


class Front:
    def __init__(self, backend: str, *, head_timeout: float = 10.0, idle_timeout: float = 60.0,
                 max_backend: int = 64) -> None:
        self.backend = backend
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.slots = asyncio.Semaphore(max_backend)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) and peer else "?"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
        except TimeoutError:
            await _reject(writer, b"408 Request Timeout", "request head not received in time")
            return
        except asyncio.LimitOverrunError:
            await _reject(writer, b"431 Request Header Fields Too Large", "request head too large")
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        forwarded = _rewrite(head, client)
        if forwarded is None:
            await _reject(writer, b"400 Bad Request", "malformed request head")
            return
        async with self.slots:
            try:
                if self.backend.startswith("tcp:"):  # a benchmark puts C git behind the same front
                    host, _, port = self.backend[4:].rpartition(":")
                    b_reader, b_writer = await asyncio.open_connection(host, int(port), limit=MAX_HEAD)
                else:
                    b_reader, b_writer = await asyncio.open_unix_connection(self.backend, limit=MAX_HEAD)
            except OSError as e:
                log.error("backend %s unreachable: %s", self.backend, e)
                await _reject(writer, b"503 Service Unavailable", "the git server is starting")
                return
            b_writer.write(forwarded)
            upstream = asyncio.create_task(self._pipe(reader, b_writer, self.idle_timeout))
            try:
                await self._pipe(b_reader, writer, None)
            finally:
                upstream.cancel()
                with contextlib.suppress(BaseException):
                    await upstream
                b_writer.close()
                writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, idle: float | None) -> None:
        try:
            while True:
                data = await (asyncio.wait_for(src.read(65536), idle) if idle else src.read(65536))
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if dst.can_write_eof():
                    dst.write_eof()


def _rewrite(head: bytes, client: str) -> bytes | None:
    lines = head[:-4].split(b"\r\n")
    request = lines[0].split(b" ")
    if len(request) != 3 or not request[2].startswith(b"HTTP/1."):
        return None
    out = [lines[0]]
    for line in lines[1:]:
        name, sep, _ = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name:
            return None
        if name.lower() not in _HOP:
            out.append(line)
    out.append(b"Connection: close")
    out.append(b"X-Pushgate-Client: " + client.encode("ascii", "replace"))
    return b"\r\n".join(out) + b"\r\n\r\n"


async def _reject(writer: asyncio.StreamWriter, status: bytes, why: str) -> None:
    body = why.encode() + b"\n"
    with contextlib.suppress(Exception):
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
    writer.close()


async def run(listen: str, backend: str, **kw: float) -> None:
    host, _, port = listen.rpartition(":")
    front = Front(backend, **kw)  # type: ignore[arg-type]
    server = await asyncio.start_server(front.handle, host.strip("[]") or None, int(port),
                                        limit=MAX_HEAD, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gitserver.front")
    p.add_argument("--listen", required=True, help="public HOST:PORT")
    p.add_argument("--backend", required=True, help="gunicorn's Unix socket (or tcp:HOST:PORT)")
    p.add_argument("--head-timeout", type=float, default=10.0, help="seconds to send a request head")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="seconds without body bytes")
    p.add_argument("--max-backend", type=int, default=64, help="requests with gunicorn at once")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args.listen, args.backend, head_timeout=args.head_timeout,
                    idle_timeout=args.idle_timeout, max_backend=args.max_backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
