"""The two baselines the ingest benchmark measures beside mxsmtp, with the same client and
bytes: aiosmtpd whose handler only answers 250, and the naive server that parses with
`email` (policy.default) and commits each message to SQLite on its own.

    python bench/baselines.py noop PORT
    python bench/baselines.py naive PORT DATABASE
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from email import message_from_bytes, policy

from aiosmtpd.smtp import SMTP


class DoNothing:
    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        return "250 OK"


class Naive:
    """Parse fully, store the raw bytes and each attachment, one commit per message."""

    def __init__(self, database: str) -> None:
        self.db = sqlite3.connect(database)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS message (id INTEGER PRIMARY KEY, "
            "subject TEXT, sender TEXT, raw BLOB)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS part (message_id INTEGER, name TEXT, data BLOB)"
        )

    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        raw = envelope.original_content  # type: ignore[attr-defined]
        parsed = message_from_bytes(raw, policy=policy.default)
        cursor = self.db.execute(
            "INSERT INTO message (subject, sender, raw) VALUES (?, ?, ?)",
            (str(parsed["subject"]), envelope.mail_from, raw),  # type: ignore[attr-defined]
        )
        for part in parsed.iter_attachments():
            self.db.execute(
                "INSERT INTO part VALUES (?, ?, ?)",
                (cursor.lastrowid, part.get_filename(), part.get_content()),
            )
        self.db.commit()
        return "250 OK"


async def serve(handler: object, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=None, hostname="bench"), "127.0.0.1", port
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    handler = DoNothing() if kind == "noop" else Naive(sys.argv[3])
    asyncio.run(serve(handler, port))


if __name__ == "__main__":
    main()
