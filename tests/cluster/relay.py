"""A TCP relay: ``python -m tests.cluster.relay LISTEN_HOST LISTEN_PORT TO_HOST TO_PORT``.

The rig's provider host runs the fake server on its loopback (the fake refuses any other
address) and this relay on the host's own address, so other hosts reach it over the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def relay(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, *listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, port, to_host, to_port = sys.argv[1:5]
    asyncio.run(relay((host, int(port)), (to_host, int(to_port))))
