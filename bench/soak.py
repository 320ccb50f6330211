"""Soak test: hold many concurrent SMTP sessions against a running mxsmtp for a while, sending
one message after another in each, then report messages accepted, errors and the server's
memory over time (which should stay flat after warm-up).

    python bench/soak.py --start                      # a fresh temp instance, 50 sessions, 60 s
    python bench/soak.py --port 25000 --pid 12345     # a server already running on loopback

Loopback only: this is a load generator, not something to point at other people's servers.
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import random
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from launch import family_pss_kib, free_port, memory_kib, start_mxsmtp, wait_ready

BIN = Path(sys.executable).parent
SAMPLE_EVERY = 5.0  # seconds between memory samples


@dataclass
class Tally:
    """What the sessions saw, shared between the sender threads."""

    accepted: int = 0
    reconnects: int = 0
    errors: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, accepted: int = 0, reconnects: int = 0, error: str | None = None) -> None:
        with self.lock:
            self.accepted += accepted
            self.reconnects += reconnects
            if error:
                self.errors[error] += 1


def build_message(number: int, size: int) -> bytes:
    """A multipart message (text, HTML, attachment) of about `size` bytes, CRLF line ends."""
    attachment = random.Random(number).randbytes(max(256, int(size * 0.6)))
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    return (
        b"From: Soak <soak@source.example>\r\nTo: inbox@soak.example\r\n"
        b"Subject: soak " + str(number).encode() + b"\r\n"
        b"Message-ID: <soak-" + str(number).encode() + b"@source.example>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
        b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, soak.\r\n"
        b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello, <b>soak</b>.</p>\r\n"
        b"--b2--\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="soak.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b1--\r\n"
    )


def hold_session(
    worker: int, host: str, port: int, size: int, until: float, tally: Tally, stop: threading.Event
) -> None:
    """Keep one session open, sending message after message; reconnect when the server
    closes it (a session time cap) and count anything that was not a 250 as an error."""
    number = worker * 1_000_000
    while time.monotonic() < until and not stop.is_set():
        try:
            client = smtplib.SMTP(host, port, timeout=60)
        except OSError as error:
            tally.add(error=f"connect: {type(error).__name__}")
            stop.wait(0.5)
            continue
        try:
            client.ehlo("soak.test.example")
            while time.monotonic() < until and not stop.is_set():
                number += 1
                message = build_message(number, size)
                client.sendmail("soak@source.example", ["inbox@soak.example"], message)
                tally.add(accepted=1)
        except smtplib.SMTPServerDisconnected:
            tally.add(reconnects=1)
        except smtplib.SMTPResponseException as error:
            if error.smtp_code == 421:  # the server ended the session on purpose
                tally.add(reconnects=1)
            else:
                tally.add(error=f"{error.smtp_code} {error.smtp_error[:40]!r}")
        except (OSError, smtplib.SMTPException) as error:
            tally.add(error=f"{type(error).__name__}: {error}"[:80])
        finally:
            client.close()


def start_server(instance: Path, port: int) -> subprocess.Popen:
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(instance / "server.log", "wb") as log:
        process = start_mxsmtp(instance, port, "soak.example", log)
    wait_ready(port, process)
    return process


def loopback(host: str) -> str:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise SystemExit(f"unknown host {host!r}") from None
    if not all(ipaddress.ip_address(address).is_loopback for address in addresses):
        raise SystemExit(f"{host} is not a loopback address; the soak test runs on loopback only")
    return host


def memory(pid: int) -> dict[str, int]:
    """The listening process's VmRSS and VmHWM, and the PSS of all the server's processes."""
    values = memory_kib(pid)
    if values:
        values["PSS"] = family_pss_kib(pid)
    return values


def soak(args: argparse.Namespace, pid: int | None) -> tuple[Tally, list[tuple[float, dict]]]:
    tally, stop = Tally(), threading.Event()
    start = time.monotonic()
    until = start + args.duration
    samples = [(0.0, memory(pid))] if pid else []
    threads = [
        threading.Thread(
            target=hold_session,
            args=(n, args.host, args.port, args.size, until, tally, stop),
            daemon=True,
        )
        for n in range(args.sessions)
    ]
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() < until:
            time.sleep(min(SAMPLE_EVERY, max(until - time.monotonic(), 0)))
            if pid:
                samples.append((time.monotonic() - start, memory(pid)))
    except KeyboardInterrupt:
        stop.set()
    for thread in threads:
        thread.join(90)
    return tally, samples


def report(args: argparse.Namespace, tally: Tally, samples: list, elapsed: float) -> None:
    print(f"sessions {args.sessions}, duration {elapsed:.1f} s, message size ~{args.size} bytes")
    print(f"accepted {tally.accepted} ({tally.accepted / elapsed:.0f} messages/s)")
    print(f"errors {sum(tally.errors.values())}", end="")
    print("".join(f"\n  {count} x {kind}" for kind, count in tally.errors.most_common()))
    print(f"sessions reopened after the server closed them: {tally.reconnects}")
    gone = [at for at, values in samples if "VmRSS" not in values]
    samples = [(at, values) for at, values in samples if "VmRSS" in values]
    if gone:
        print(f"THE SERVER WAS GONE from {gone[0]:.0f} s on")
    if samples:
        print("server memory over time (MiB): listening process RSS, all processes PSS")
        for at, values in samples:
            print(f"  {at:5.0f} s  {values['VmRSS'] / 1024:7.1f}  {values['PSS'] / 1024:7.1f}")
        first, last = samples[0][1], samples[-1][1]
        warm = samples[min(2, len(samples) - 1)][1]  # after ~10 s of load
        print(
            f"RSS start {first['VmRSS'] / 1024:.1f} MiB, after warm-up {warm['VmRSS'] / 1024:.1f}"
            f" MiB, end {last['VmRSS'] / 1024:.1f} MiB, peak {last['VmHWM'] / 1024:.1f} MiB"
        )
        print(
            f"all processes PSS start {first['PSS'] / 1024:.1f} MiB, after warm-up "
            f"{warm['PSS'] / 1024:.1f} MiB, end {last['PSS'] / 1024:.1f} MiB"
        )


def stored_count(instance: Path) -> int:
    with sqlite3.connect(instance / "mxsmtp.sqlite3") as connection:
        count = connection.execute("SELECT count(*) FROM message").fetchone()[0]
    connection.close()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address of the server")
    parser.add_argument("--port", type=int, help="SMTP port of a running server")
    parser.add_argument("--pid", type=int, help="the server's pid, to read its memory")
    parser.add_argument("--start", action="store_true", help="start mxsmtp smtp on a temp instance")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--size", type=int, default=4096, help="bytes per message, about")
    args = parser.parse_args()
    args.host = loopback(args.host)
    workdir = Path(tempfile.mkdtemp(prefix="mxsmtp-soak-")) if args.start else None
    server = None
    try:
        if workdir is not None:
            args.port = args.port or free_port()
            server = start_server(workdir / "instance", args.port)
            args.pid = server.pid
        elif args.port is None:
            parser.error("give --port (and --pid) of a running server, or --start")
        began = time.monotonic()
        tally, samples = soak(args, args.pid)
        report(args, tally, samples, time.monotonic() - began)
        if workdir is not None:
            stored = stored_count(workdir / "instance")
            print(f"stored {stored} (every accepted message: {stored >= tally.accepted})")
    finally:
        if server is not None and server.poll() is not None:
            log = (workdir / "instance" / "server.log").read_text(errors="replace")
            print(f"the server exited with {server.returncode}; its last output:")
            print("\n".join(log.splitlines()[-30:]))
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
