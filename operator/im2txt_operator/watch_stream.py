"""A watch's answer as the events it streams: one JSON object per line, of any length, however the transport cuts it."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a stream of chunks, however they are cut (a watch event is one line, of any length: a
    line-reading stream refuses lines longer than 64 KiB, and a tenant's Job may carry more in its annotations)."""
    rest = b""
    async for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if rest.strip():
        yield rest
