"""watch_stream.py: watch events of any length, however the stream cuts them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from im2txt_operator.watch_stream import lines


async def test_watch_lines_are_whole_however_the_stream_cuts_them() -> None:
    big = {"type": "MODIFIED", "object": {"metadata": {"annotations": {"a": "x" * 200_000}}}}
    text = (json.dumps(big) + "\n" + json.dumps({"type": "BOOKMARK"}) + "\n").encode()

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(text), 7_000):
            yield text[at:at + 7_000]
        yield b'{"type": "DELETED"}'  # the last line without its newline

    got = [json.loads(line) async for line in lines(chunks())]
    assert got == [big, {"type": "BOOKMARK"}, {"type": "DELETED"}]
