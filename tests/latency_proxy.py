"""A TCP proxy on 127.0.0.1 that holds every client send for a fixed delay.

``python -m tests.latency_proxy LISTEN_PORT TARGET_PORT DELAY_S``: each chunk
a client sends (an HTTP request, for an S3 client) reaches the target
``DELAY_S`` seconds later; the replies pass at once.  In front of the moto
server it gives each request the round trip a real object store has, which
loopback does not (see :func:`tests.servers.latency_proxy`).
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader, writer, delay: float) -> None:
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(listen: int, target: int, delay: float) -> None:
    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, 0.0))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
