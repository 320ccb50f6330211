"""Ingest benchmark: mxsmtp against two baselines measured in the same run, with the same
client (Postfix's smtp-source) and the same message bytes.

    python bench/ingest.py            # full loads (about 10 minutes)
    python bench/ingest.py --scale 0.1  # a quick look

smtp-source comes with Debian's postfix package; install it without running the daemon:
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get install -y postfix

Prints messages/s and peak memory per server and load: of the process that listens (VmHWM),
and of all the server's processes together (for mxsmtp the listener, its writer, fork server
and parsers; PSS summed, sampled every 0.5 s, until the bodies are parsed), and the ratios
mxsmtp / baseline. Afterwards it checks that every message is stored whole.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from launch import family_pss_kib, free_port, memory_kib, start_mxsmtp, wait_ready

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


@dataclass(frozen=True)
class Load:
    name: str
    size: int
    messages: int
    sessions: int
    reuse_connections: bool


LOADS = (
    Load("4 KiB x 20 sessions", 4 * 1024, 10_000, 20, True),
    Load("1 MiB x 10 sessions", 1024 * 1024, 500, 10, True),
    Load("4 KiB, new connection per message", 4 * 1024, 2_000, 20, False),
)


@dataclass(frozen=True)
class Result:
    server: str
    load: Load
    seconds: float
    peak_mib: float
    family_peak_mib: float
    drain_seconds: float = 0.0  # mxsmtp: after the last 250, until every body was parsed

    @property
    def rate(self) -> float:
        return self.load.messages / self.seconds


def build_message(size: int) -> tuple[bytes, bytes]:
    """A multipart message (text, HTML, attachment) of about `size` bytes, LF line ends as
    smtp-source -F wants them; and the attachment's bytes."""
    rng = random.Random(size)
    attachment = rng.randbytes(max(256, int(size * 0.6)))
    encoded = base64.encodebytes(attachment).decode()
    text = "Hello,\n\nthe report is attached.\n\n-- \nBench\n"
    html = "<html><body><p>Hello,</p><p>the <b>report</b> is attached.</p></body></html>\n"
    message = (
        "From: Bench <bench@source.example>\nTo: inbox@bench.example\nSubject: Report\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
        '--b1\nContent-Type: multipart/alternative; boundary="b2"\n\n'
        f"--b2\nContent-Type: text/plain; charset=utf-8\n\n{text}\n"
        f"--b2\nContent-Type: text/html; charset=utf-8\n\n{html}\n--b2--\n\n"
        "--b1\nContent-Type: application/octet-stream\n"
        'Content-Disposition: attachment; filename="report.bin"\n'
        f"Content-Transfer-Encoding: base64\n\n{encoded}\n--b1--\n"
    )
    return message.encode(), attachment


class FamilyPeak:
    """Samples the PSS of a server's processes together while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> FamilyPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, family_pss_kib(self.pid))
            if self._done.wait(0.5):
                return


def peak_mib(pid: int) -> float:
    return memory_kib(pid).get("VmHWM", 0) / 1024


def start_server(kind: str, port: int, workdir: Path) -> subprocess.Popen:
    if kind == "mxsmtp":
        return start_mxsmtp(workdir / "instance", port, "bench.example")
    command = [
        sys.executable,
        str(HERE / "baselines.py"),
        kind,
        str(port),
        str(workdir / "naive.sqlite3"),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def drive(load: Load, port: int, message_file: Path) -> float:
    command = [
        SMTP_SOURCE,
        "-s",
        str(load.sessions),
        "-m",
        str(load.messages),
        "-F",
        str(message_file),
        "-f",
        "bench@source.example",
        "-t",
        "inbox@bench.example",
        "-M",
        "bench.client",
    ]
    if load.reuse_connections:
        command.append("-d")
    started = time.perf_counter()
    subprocess.run([*command, f"127.0.0.1:{port}"], check=True)
    return time.perf_counter() - started


def wait_for_bodies(workdir: Path, timeout: float = 600) -> float:
    """mxsmtp answers 250 once the raw bytes are committed and parses bodies right after:
    wait for that backlog to drain (the server keeps running) and say how long it took."""
    started = time.perf_counter()
    with sqlite3.connect(workdir / "instance" / "mxsmtp.sqlite3") as db:
        while db.execute("SELECT count(*) FROM message WHERE parsed = 0").fetchone()[0]:
            if time.perf_counter() - started > timeout:
                raise SystemExit("message bodies were not all parsed in time")
            time.sleep(0.2)
    return time.perf_counter() - started


def verify_mxsmtp(workdir: Path, load: Load, sent: bytes, attachment: bytes) -> None:
    """Every message stored, raw bytes whole, the attachment byte-exact."""
    wire = sent.replace(b"\n", b"\r\n") + b"\r\n"  # smtp-source ends with an empty line
    digest = hashlib.sha256(attachment).hexdigest()
    with sqlite3.connect(workdir / "instance" / "mxsmtp.sqlite3") as db:
        stored = db.execute("SELECT count(*) FROM message").fetchone()[0]
        whole = sum(raw.endswith(wire) for (raw,) in db.execute("SELECT data FROM message_raw"))
        exact = db.execute(
            "SELECT count(*) FROM attachment WHERE sha256 = ?", (digest,)
        ).fetchone()[0]
    if not stored == whole == exact == load.messages:
        raise SystemExit(
            f"mxsmtp stored {stored}, whole {whole}, exact attachments {exact}; "
            f"sent {load.messages}"
        )


def measure(kind: str, load: Load, message_file: Path, sent: bytes, attachment: bytes) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as folder:
        workdir, port = Path(folder), free_port()
        server = start_server(kind, port, workdir)
        try:
            wait_ready(port, server)
            with FamilyPeak(server.pid) as family:
                seconds = drive(load, port, message_file)
                drained = wait_for_bodies(workdir) if kind == "mxsmtp" else 0.0
            peak = peak_mib(server.pid)
        finally:
            server.terminate()
            server.wait(60)
        if kind == "mxsmtp":
            verify_mxsmtp(workdir, load, sent, attachment)
        return Result(kind, load, seconds, peak, family.peak_kib / 1024, drained)


def report(results: list[Result]) -> None:
    print(
        "\n| load | server | msg/s | peak MiB, listening process | peak MiB, all processes "
        "(PSS) | mxsmtp / this | bodies parsed after |"
    )
    print("|---|---|---|---|---|---|---|")
    for load in {r.load: None for r in results}:
        ours = next(r for r in results if r.load == load and r.server == "mxsmtp")
        for result in (r for r in results if r.load == load):
            ratio = ours.rate / result.rate
            drain = f"{result.drain_seconds:.1f} s" if result.server == "mxsmtp" else ""
            print(
                f"| {load.name} ({load.messages}) | {result.server} | {result.rate:,.0f} | "
                f"{result.peak_mib:.0f} | {result.family_peak_mib:.0f} | {ratio:.2f} | {drain} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--servers", default="noop,naive,mxsmtp")
    options = parser.parse_args()
    if not Path(SMTP_SOURCE).exists():
        raise SystemExit("smtp-source not found: apt-get install postfix (see the docstring)")
    results: list[Result] = []
    for base in LOADS:
        load = Load(
            base.name,
            base.size,
            max(base.sessions, int(base.messages * options.scale)),
            base.sessions,
            base.reuse_connections,
        )
        sent, attachment = build_message(load.size)
        with tempfile.NamedTemporaryFile(suffix=".eml") as message_file:
            message_file.write(sent)
            message_file.flush()
            for kind in options.servers.split(","):
                result = measure(kind, load, Path(message_file.name), sent, attachment)
                print(
                    f"{load.name}: {kind}: {result.rate:,.0f} msg/s, "
                    f"peak {result.peak_mib:.0f} MiB, all processes {result.family_peak_mib:.0f}"
                    " MiB",
                    flush=True,
                )
                results.append(result)
    report(results)


if __name__ == "__main__":
    main()
