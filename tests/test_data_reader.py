"""The chunked DATA reader: end-of-data mark, dot-unstuffing and the size limit, across every
way the bytes can be split into reads."""

from __future__ import annotations

import asyncio

import pytest

from mxsmtp_web.smtp.data import DataSection, read_data_section


def read(
    transmitted: bytes, limit: int = 10_000, step: int | None = None, buffer_limit: int = 64
) -> tuple[DataSection, bytes]:
    """Feed `transmitted` in pieces of `step` bytes; return the section and what is left."""

    async def run() -> tuple[DataSection, bytes]:
        reader = asyncio.StreamReader(limit=buffer_limit)
        pieces = [
            transmitted[i : i + (step or len(transmitted))]
            for i in range(0, len(transmitted), step or len(transmitted))
        ]

        async def feed() -> None:
            for piece in pieces:
                reader.feed_data(piece)
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
        section = await read_data_section(reader, limit)
        await feeder
        return section, await reader.read()

    return asyncio.run(run())


CASES = [
    (b".\r\n", b""),
    (b"a\r\n.\r\n", b"a\r\n"),
    (b"..\r\n.\r\n", b".\r\n"),
    (b".x\r\n..y\r\nz.\r\n.\r\n", b"x\r\n.y\r\nz.\r\n"),
    (b"line one.\r\nline two.\r\n\r\n.\r\n", b"line one.\r\nline two.\r\n\r\n"),
    (b"bare\n.\nstill data\r\n.\r\n", b"bare\n\nstill data\r\n"),  # not the end
    (b"bare\n..x\n.\r\n.\r\n", b"bare\n.x\n\r\n"),  # smtplib stuffs after bare LF
    (b"a\r\n. \r\n.\r\n", b"a\r\n \r\n"),
]


@pytest.mark.parametrize("step", [None, 1, 2, 3, 5, 7])
@pytest.mark.parametrize(("transmitted", "message"), CASES)
def test_end_mark_and_unstuffing_survive_any_split(
    transmitted: bytes, message: bytes, step: int | None
) -> None:
    section, rest = read(transmitted + b"QUIT\r\n", step=step)
    assert section == DataSection(content=message, too_large=False, size=len(message))
    assert rest == b"QUIT\r\n"  # pipelined commands after the mark stay for the session


def test_long_lines_are_read_in_chunks_larger_than_the_buffer() -> None:
    body = (b"x" * 1000 + b"\r\n" + b"." * 300 + b"\r\n") * 5
    section, _ = read(body + b".\r\n", buffer_limit=64, step=100)
    expected = (b"x" * 1000 + b"\r\n" + b"." * 299 + b"\r\n") * 5
    assert section.content == expected


def test_size_limit_drops_the_content_but_reads_to_the_end() -> None:
    section, rest = read(b"y" * 5000 + b"\r\n.\r\nNOOP\r\n", limit=1000, step=512)
    assert section.too_large and section.content == b"" and section.size == 5002
    assert rest == b"NOOP\r\n"


@pytest.mark.parametrize("width", range(56, 72))
def test_a_stuffed_dot_is_dropped_wherever_a_chunk_ends(width: int) -> None:
    """Chunks of a full buffer end at every offset of these lines, between CR and LF too."""
    lines = [b"." * (n % 3 + 1) + b"y" * (width - n) for n in range(40)]
    transmitted = b"".join(line + b"\r\n" for line in lines) + b".\r\n"
    section, _ = read(transmitted, buffer_limit=64, step=97)
    assert section.content == b"".join(line[1:] + b"\r\n" for line in lines)
