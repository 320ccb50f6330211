"""The web side at volume: with 100,000 stored messages, how fast the inbox's first page, a
search on subject or sender, and a message page answer (median of 20 requests, server time
through Flask's test client), and how long purging 50,000 old messages takes while the SMTP
listener keeps taking mail (the slowest delivery during the purge).

    python bench/web_volume.py              # 100,000 messages
    python bench/web_volume.py --messages 20000

Runs on a fresh temporary instance; loopback only.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time

from launch import free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def sample(number: int) -> tuple[bytes, object]:
    """A message's raw bytes and the value parse_message would give for them (built
    directly: parsing 100,000 messages would make the fixture take minutes)."""
    from mxsmtp_web.mail.parsing import ParsedMail, ParsedPart

    sender = f"Sender {number % 997} <sender{number % 997}@example.org>"
    subject = f"Order {number} shipped (batch {number % 101})"
    text = f"Hello,\n\nyour order {number} left the warehouse today.\n"
    html = f"<p>Your order <b>{number}</b> left the warehouse.</p>"
    invoice = ParsedPart(
        f"invoice-{number}.pdf", "application/pdf", None, "attachment", os.urandom(512)
    )
    raw = (
        f"From: {sender}\r\nTo: inbox@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{number}@bench.example>\r\n\r\n{text}"
    ).encode()
    headers = (
        ("From", sender),
        ("To", "inbox@example.com"),
        ("Subject", subject),
        ("Message-ID", f"<{number}@bench.example>"),
    )
    parsed = ParsedMail(
        headers,
        subject,
        sender,
        ("inbox@example.com",),
        (),
        None,
        f"<{number}@bench.example>",
        None,
        (),
        text,
        html,
        (invoice,),
        (),
    )
    return raw, parsed


def fill(app: object, count: int) -> None:
    """Store `count` messages through the same storage code the listener uses."""
    from mxsmtp_web.store import storage
    from mxsmtp_web.store.models import Status

    envelope = storage.Envelope(
        "sender@example.org", ("inbox@example.com",), "127.0.0.1", "bench.client"
    )
    with app.app_context():
        for start in range(0, count, 1000):

            def batch(connection: object, start: int = start) -> None:
                for number in range(start, min(start + 1000, count)):
                    raw, parsed = sample(number)
                    storage.insert_message(
                        connection, envelope, parsed, raw, parsed.html, Status.RECEIVED
                    )

            storage.run_in_transaction(batch)
            print(f"\rstored {min(start + 1000, count):,}", end="", flush=True)
    print()


def median_ms(client: object, path: str, times: int = 20) -> float:
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        response = client.get(path)
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(durations)


def logged_in_client(app: object) -> object:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from conftest import log_in, make_user

    make_user(app, "bench", "admin")
    client = app.test_client()
    log_in(client, "bench")
    return client


def delivery_latencies(port: int, stop: threading.Event, found: list[float]) -> None:
    """Deliver a message every 20 ms and note how long each took to get its 250 (which
    needs the database's write lock, that the purge also takes)."""
    raw = sample(10**9)[0]
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.sendmail("sender@example.org", ["inbox@example.com"], raw)
            found.append(time.perf_counter() - started)
            stop.wait(0.02)


def purge_beside_listener(app: object, half: int) -> tuple[float, float, int]:
    from sqlalchemy import text

    from mxsmtp_web.smtp.listener import Listener
    from mxsmtp_web.store import settings, storage
    from mxsmtp_web.store.extensions import db

    with app.app_context():
        db.session.execute(
            text("UPDATE message SET received_at = datetime('now', '-30 days') WHERE id <= :n"),
            {"n": half},
        )
        db.session.commit()
        port = free_port()
        settings.save({"port": str(port)})
    listener = Listener(app)
    listener.start()
    stop, latencies = threading.Event(), []
    pinger = threading.Thread(target=delivery_latencies, args=(port, stop, latencies))
    pinger.start()
    with app.app_context():
        started = time.perf_counter()
        removed = storage.purge_older_than(7)
        seconds = time.perf_counter() - started
    stop.set()
    pinger.join()
    listener.stop(grace=5)
    return seconds, max(latencies), removed.messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        os.environ["MXSMTP_INSTANCE"] = folder
        from mxsmtp_web import create_app

        app = create_app()
        fill(app, options.messages)
        client = logged_in_client(app)
        middle = options.messages // 2
        pages = {
            "inbox, first page": "/inbox/",
            "search subject": "/inbox/?q=shipped+batch+42",
            "search sender": "/inbox/?q=sender42",
            "message page": f"/inbox/message/{middle}",
            "message preview": f"/inbox/message/{middle}/preview",
        }
        print(f"\n| with {options.messages:,} messages | median of 20 (ms) |\n|---|---|")
        for name, path in pages.items():
            print(f"| {name} | {median_ms(client, path):.1f} |")
        seconds, worst, removed = purge_beside_listener(app, middle)
        print(
            f"\npurged {removed:,} messages in {seconds:.1f} s; the slowest delivery meanwhile: "
            f"{worst * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
