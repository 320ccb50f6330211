"""Ingest benchmark: mxsmtp against two baselines measured in the same run, with the same
client (Postfix's smtp-source) and the same message bytes.

    python bench/ingest.py            # full loads (about 15 minutes with the sustained one)
    python bench/ingest.py --scale 0.1 --sustained 10  # a quick look
    python bench/ingest.py --hook     # every load also with a message hook returning True
    python bench/ingest.py --database postgresql          # a throwaway durable cluster
    python bench/ingest.py --database postgresql://USER@127.0.0.1:PORT/postgres --nodes 2
    python bench/ingest.py --mxsmtp-bin old=/tmp/base/.venv/bin --mxsmtp-bin new=.venv/bin

smtp-source comes with Debian's postfix package; install it without running the daemon:
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get install -y postfix

Prints messages/s and peak memory per server and load: of the process that listens (VmHWM;
with several nodes the largest of them), and of all the server's processes together (for
mxsmtp the listeners, writer, fork server and parsers; PSS summed, sampled every 0.5 s, until
the bodies are parsed; a PostgreSQL server's own processes are not counted), and the ratios
mxsmtp / baseline and this / noop. Afterwards it checks that every message is stored whole,
parsed, with a byte-exact attachment; a run where one is not fails.

The sustained load sends for a fixed time (60 s) and counts, for mxsmtp, only the messages
whose body is parsed by the end: its msg/s is parsed messages / (sending time + the time after
sending stopped until every body was parsed). For the baselines it counts the 250 answers.

On PostgreSQL (`--database URL`: a server where we may CREATE DATABASE; or `postgresql`: start
a throwaway durable cluster, fsync on, with tests/pgcluster.py) each measurement gets a fresh
database, dropped afterwards. `--nodes N` runs N `mxsmtp smtp --listen` processes (each with
its own workers) on one database and splits the load: one smtp-source per node, each with
1/N of the messages and sessions; msg/s is all messages / wall time.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from launch import (
    configure_mxsmtp,
    family_pss_kib,
    free_port,
    memory_kib,
    start_node,
    wait_ready,
)
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
HOOK_SCRIPT = "def process_message(message):\n    return True\n"
HOOK_SETTING = ("message_hook", "trivial.py:process_message")
# How long to wait for the bodies after the last message; a sustained load leaves more.
DRAIN_TIMEOUT_SECONDS = 1800.0
# ... and how long the count of unparsed bodies may stand still before the run fails.
STALL_SECONDS = 120.0
# smtp-source's -m for a sustained load: more than can be sent; it is stopped at the time.
UNBOUNDED_MESSAGES = 100_000_000


@dataclass(frozen=True)
class Load:
    name: str
    size: int
    messages: int
    sessions: int
    reuse_connections: bool
    duration: float = 0.0  # sustained: seconds of sending (messages is then not a count)

    @property
    def sustained(self) -> bool:
        return self.duration > 0


LOADS = (
    Load("4 KiB x 20 sessions", 4 * 1024, 10_000, 20, True),
    Load("1 MiB x 10 sessions", 1024 * 1024, 500, 10, True),
    Load("4 KiB, new connection per message", 4 * 1024, 2_000, 20, False),
)
SUSTAINED = Load("4 KiB x 20 sessions, sustained", 4 * 1024, 0, 20, True, 60.0)


@dataclass(frozen=True)
class Server:
    """One row of the table: a baseline, or mxsmtp from one build, with or without a hook."""

    kind: str  # noop, naive, mxsmtp
    label: str
    bin_dir: Path = BIN
    hook: bool = False


@dataclass(frozen=True)
class Result:
    server: Server
    load: Load
    messages: int  # sent (fixed loads) or counted (sustained: parsed, or 250s for baselines)
    seconds: float  # sending, until the last 250 (or the end of the sustained time)
    peak_mib: float
    family_peak_mib: float
    drain_seconds: float = 0.0  # mxsmtp: after the last 250, until every body was parsed

    @property
    def rate(self) -> float:
        if self.load.sustained:
            return self.messages / (self.seconds + self.drain_seconds)
        return self.messages / self.seconds


def build_message(size: int) -> tuple[bytes, bytes]:
    """A multipart message (text, HTML, attachment) of about `size` bytes, LF line ends as
    smtp-source -F wants them; and the attachment's bytes."""
    rng = random.Random(size)
    attachment = rng.randbytes(max(256, int(size * 0.6)))
    encoded = base64.encodebytes(attachment).decode()
    text_part = "Hello,\n\nthe report is attached.\n\n-- \nBench\n"
    html = "<html><body><p>Hello,</p><p>the <b>report</b> is attached.</p></body></html>\n"
    message = (
        "From: Bench <bench@source.example>\nTo: inbox@bench.example\nSubject: Report\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
        '--b1\nContent-Type: multipart/alternative; boundary="b2"\n\n'
        f"--b2\nContent-Type: text/plain; charset=utf-8\n\n{text_part}\n"
        f"--b2\nContent-Type: text/html; charset=utf-8\n\n{html}\n--b2--\n\n"
        "--b1\nContent-Type: application/octet-stream\n"
        'Content-Disposition: attachment; filename="report.bin"\n'
        f"Content-Transfer-Encoding: base64\n\n{encoded}\n--b1--\n"
    )
    return message.encode(), attachment


class FamilyPeak:
    """Samples the PSS of a server's processes (all nodes') together while the block runs."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
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
            total = sum(family_pss_kib(pid) for pid in self.pids)
            self.peak_kib = max(self.peak_kib, total)
            if self._done.wait(0.5):
                return


def peak_mib(pid: int) -> float:
    return memory_kib(pid).get("VmHWM", 0) / 1024


# --- where mxsmtp stores -----------------------------------------------------------------


class SQLiteStore:
    """The instance's own SQLite file (the default)."""

    engine_name = "SQLite"

    @contextmanager
    def database(self, workdir: Path) -> Iterator[tuple[str | None, str]]:
        """(MXSMTP_DATABASE_URL to give mxsmtp or None, SQLAlchemy URL to check with)."""
        yield None, f"sqlite:///{workdir / 'instance' / 'mxsmtp.sqlite3'}"

    def close(self) -> None:
        pass


class PostgresStore:
    """A PostgreSQL server: a fresh database per measurement, dropped afterwards."""

    engine_name = "PostgreSQL"

    def __init__(self, server_url: str, cluster: object | None = None) -> None:
        self.server_url = make_url(server_url).set(drivername="postgresql+psycopg")
        self.cluster = cluster
        self.admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        self._names = itertools.count(1)

    @classmethod
    def throwaway(cls) -> PostgresStore:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from pgcluster import start_cluster

        cluster = start_cluster(durable=True)
        print(f"started a throwaway durable PostgreSQL cluster (fsync on) at {cluster.url}")
        return cls(cluster.url, cluster)

    @contextmanager
    def database(self, workdir: Path) -> Iterator[tuple[str | None, str]]:
        name = f"bench_{os.getpid()}_{next(self._names)}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = self.server_url.set(database=name)
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            yield plain, url.render_as_string(hide_password=False)
        finally:
            with self.admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.admin.dispose()
        if self.cluster is not None:
            self.cluster.stop()  # type: ignore[attr-defined]


# --- driving -----------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal shares, the larger first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def source_command(load: Load, sessions: int, messages: int, message_file: Path, port: int):
    command = [
        SMTP_SOURCE,
        "-s",
        str(sessions),
        "-m",
        str(messages),
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
    if load.sustained:
        command.append("-c")  # a running count of completed DATA commands on stdout
    return [*command, f"127.0.0.1:{port}"]


def drive(load: Load, ports: list[int], message_file: Path) -> tuple[float, int]:
    """One smtp-source per node, in parallel, with its share of the messages and sessions.
    Returns the wall time and the number of messages answered 250 (fixed loads: all)."""
    sessions = split(load.sessions, len(ports))
    messages = split(load.messages, len(ports))
    started = time.perf_counter()
    if not load.sustained:
        clients = [
            subprocess.Popen(source_command(load, s, m, message_file, port))
            for port, s, m in zip(ports, sessions, messages, strict=True)
        ]
        codes = [client.wait() for client in clients]
        seconds = time.perf_counter() - started
        if any(codes):
            raise SystemExit(f"smtp-source failed: exit codes {codes}")
        return seconds, load.messages
    clients = [
        subprocess.Popen(
            source_command(load, s, UNBOUNDED_MESSAGES, message_file, port),
            stdout=subprocess.PIPE,
        )
        for port, s in zip(ports, sessions, strict=True)
    ]
    outputs: list[bytes] = [b""] * len(clients)

    def read(index: int) -> None:
        outputs[index] = clients[index].stdout.read()  # type: ignore[union-attr]

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(clients))]
    for reader in readers:
        reader.start()
    time.sleep(max(0.0, load.duration - (time.perf_counter() - started)))
    for client in clients:
        client.send_signal(signal.SIGTERM)
    seconds = time.perf_counter() - started
    for client, reader in zip(clients, readers, strict=True):
        client.wait(30)
        reader.join(30)
        if client.returncode not in (-signal.SIGTERM, 0):
            raise SystemExit(f"smtp-source failed: exit code {client.returncode}")
    answered = 0
    for output in outputs:
        counts = re.findall(rb"\d+", output)
        answered += int(counts[-1]) if counts else 0
    return seconds, answered


def wait_for_bodies(check: Engine, timeout: float = DRAIN_TIMEOUT_SECONDS) -> float:
    """mxsmtp answers 250 once the raw bytes are committed and parses bodies right after:
    wait for that backlog to drain (the servers keep running) and say how long it took. The
    count of messages must also hold still (a sustained client is stopped mid-dialogue)."""
    started = progress = time.perf_counter()
    previous, last_waiting = -1, -1
    with check.connect() as db:
        while True:
            stored, waiting = db.execute(
                text("SELECT count(*), count(*) FILTER (WHERE NOT parsed) FROM message")
            ).one()
            db.commit()  # a fresh snapshot for the next look
            now = time.perf_counter()
            if not waiting and stored == previous:
                return now - started - 0.2
            previous = stored if not waiting else -1
            if waiting != last_waiting:
                progress, last_waiting = now, waiting
            stalled = now - progress > STALL_SECONDS
            if stalled or now - started > timeout:
                ids = db.execute(
                    text("SELECT id FROM message WHERE NOT parsed ORDER BY id LIMIT 20")
                ).scalars()
                raise SystemExit(
                    f"message bodies were not all parsed: {waiting} of {stored} left after "
                    f"{now - started:.0f} s{f', none for {STALL_SECONDS:.0f} s' * stalled} "
                    f"(ids {', '.join(map(str, ids))})"
                )
            time.sleep(0.2)


def verify_mxsmtp(check: Engine, expected: int | None, sent: bytes, attachment: bytes) -> int:
    """Every message stored, parsed, raw bytes whole, the attachment byte-exact. `expected`:
    the count sent, or None (sustained) for at least one. Returns the count stored."""
    wire = sent.replace(b"\n", b"\r\n") + b"\r\n"  # smtp-source ends with an empty line
    digest = hashlib.sha256(attachment).hexdigest()
    with check.connect() as db:
        stored, parsed = db.execute(
            text("SELECT count(*), count(*) FILTER (WHERE parsed) FROM message")
        ).one()
        whole = db.execute(
            text(
                "SELECT count(*) FROM message_raw WHERE length(data) >= :n "
                "AND substr(data, length(data) - :n + 1) = :wire"
            ),
            {"n": len(wire), "wire": wire},
        ).scalar_one()
        exact = db.execute(
            text("SELECT count(*) FROM attachment WHERE sha256 = :digest"), {"digest": digest}
        ).scalar_one()
    if not stored == parsed == whole == exact == (stored if expected is None else expected):
        raise SystemExit(
            f"mxsmtp stored {stored}, parsed {parsed}, whole {whole}, exact attachments "
            f"{exact}; sent {'(sustained)' if expected is None else expected}"
        )
    if stored == 0:
        raise SystemExit("mxsmtp stored nothing")
    return stored


def measure(
    server: Server,
    load: Load,
    message_file: Path,
    sent: bytes,
    attachment: bytes,
    store: SQLiteStore | PostgresStore,
    nodes: int,
    workers: int | None,
) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"bench-{server.kind}-") as folder:
        workdir = Path(folder)
        if server.kind != "mxsmtp":
            return measure_baseline(server, load, message_file, workdir)
        with store.database(workdir) as (database_url, check_url):
            return measure_mxsmtp(
                server, load, message_file, sent, attachment, workdir, database_url,
                check_url, nodes, workers,
            )  # fmt: skip


def measure_baseline(server: Server, load: Load, message_file: Path, workdir: Path) -> Result:
    port = free_port()
    command = [sys.executable, str(HERE / "baselines.py"), server.kind, str(port)]
    process = subprocess.Popen(
        [*command, str(workdir / "naive.sqlite3")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, process)
        with FamilyPeak([process.pid]) as family:
            seconds, answered = drive(load, [port], message_file)
        peak = peak_mib(process.pid)
    finally:
        process.terminate()
        process.wait(60)
    return Result(server, load, answered, seconds, peak, family.peak_kib / 1024)


def measure_mxsmtp(
    server: Server,
    load: Load,
    message_file: Path,
    sent: bytes,
    attachment: bytes,
    workdir: Path,
    database_url: str | None,
    check_url: str,
    nodes: int,
    workers: int | None,
) -> Result:
    instance = workdir / "instance"
    (instance / "hooks").mkdir(parents=True)
    (instance / "hooks" / "trivial.py").write_text(HOOK_SCRIPT)
    ports = [free_port() for _ in range(nodes)]
    extra = (HOOK_SETTING,) if server.hook else ()
    configure_mxsmtp(
        instance,
        ports[0],
        "bench.example",
        bin_dir=server.bin_dir,
        database_url=database_url,
        extra=extra,
    )
    logs = [open(workdir / f"node{i}.log", "wb") for i in range(nodes)]  # noqa: SIM115
    processes: list[subprocess.Popen] = []
    check = create_engine(check_url)
    try:
        for i, port in enumerate(ports):
            processes.append(
                start_node(
                    instance,
                    bin_dir=server.bin_dir,
                    database_url=database_url,
                    listen=f"127.0.0.1:{port}" if nodes > 1 else None,
                    workers=workers,
                    output=logs[i],
                )
            )
        for port, process in zip(ports, processes, strict=True):
            wait_ready(port, process, timeout=60)
        with FamilyPeak([p.pid for p in processes]) as family:
            seconds, _answered = drive(load, ports, message_file)
            drained = wait_for_bodies(check)
        peak = max(peak_mib(p.pid) for p in processes)
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"an mxsmtp node exited with {process.returncode}")
    except BaseException:
        for log in logs:
            log.flush()
        for i in range(nodes):
            tail = (workdir / f"node{i}.log").read_text(errors="replace")[-3000:]
            print(f"--- node {i} log (end) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(120)
        for log in logs:
            log.close()
    try:
        stored = verify_mxsmtp(check, None if load.sustained else load.messages, sent, attachment)
    finally:
        check.dispose()
    return Result(server, load, stored, seconds, peak, family.peak_kib / 1024, drained)


# --- the report --------------------------------------------------------------------------


def report(results: list[Result], header: list[str]) -> None:
    print()
    for line in header:
        print(line)
    print(
        "\n| load | server | msg/s | peak MiB, listening process | peak MiB, all processes "
        "(PSS) | mxsmtp / this | this / noop | bodies parsed after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for load in {r.load: None for r in results}:
        rows = [r for r in results if r.load == load]
        ours = next((r for r in rows if r.server.kind == "mxsmtp" and not r.server.hook), None)
        noop = next((r for r in rows if r.server.kind == "noop"), None)
        for result in rows:
            ratio = f"{ours.rate / result.rate:.2f}" if ours else ""
            to_noop = f"{result.rate / noop.rate:.2f}" if noop else ""
            mxsmtp = result.server.kind == "mxsmtp"
            drain = f"{result.drain_seconds:.1f} s" if mxsmtp else ""
            if load.sustained:
                counted = "parsed" if mxsmtp else "answered"
                name = f"{load.name} {load.duration:.0f} s ({result.messages:,} {counted})"
            else:
                name = f"{load.name} ({load.messages:,})"
            print(
                f"| {name} | {result.server.label} | {result.rate:,.0f} | "
                f"{result.peak_mib:.0f} | {result.family_peak_mib:.0f} | {ratio} | "
                f"{to_noop} | {drain} |"
            )


def build_of(bin_dir: Path) -> str:
    """Which source a bin folder's mxsmtp runs: its folder, commit, and whether it is dirty."""
    python = bin_dir / "python"
    try:
        script = "import mxsmtp_web, os; print(os.path.dirname(mxsmtp_web.__file__))"
        where = subprocess.run(  # from bin_dir: `-c` would import from the current folder
            [str(python), "-c", script],
            capture_output=True, text=True, check=True, timeout=60, cwd=bin_dir,
        ).stdout.strip()  # fmt: skip
        commit = subprocess.run(
            ["git", "-C", where, "log", "-1", "--format=%h"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--", "."],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return f"{bin_dir}: source unknown"
    return f"{bin_dir}: {where} at {commit}{' (with uncommitted changes)' if dirty else ''}"


def servers_of(options: argparse.Namespace) -> list[Server]:
    builds: list[tuple[str, Path]] = []
    for given in options.mxsmtp_bin or [str(BIN)]:
        name, _, folder = given.rpartition("=")
        builds.append((name, Path(folder).resolve()))
    for _, folder in builds:
        if not (folder / "mxsmtp").exists():
            raise SystemExit(f"no mxsmtp executable in {folder}")
    servers: list[Server] = []
    for kind in options.servers.split(","):
        if kind != "mxsmtp":
            servers.append(Server(kind, kind))
            continue
        for name, folder in builds:
            label = f"mxsmtp {name}" if name else "mxsmtp"
            servers.append(Server("mxsmtp", label, folder))
            if options.hook:
                servers.append(Server("mxsmtp", f"{label} + hook", folder, hook=True))
    return servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--servers", default="noop,naive,mxsmtp")
    parser.add_argument(
        "--loads", default="all", help="comma-separated numbers of LOADS (0, 1, 2) or 'all'"
    )
    parser.add_argument(
        "--sustained", type=float, default=60.0, metavar="SECONDS",
        help="the sustained load's sending time (0: leave it out)",
    )  # fmt: skip
    parser.add_argument(
        "--hook", action="store_true", help="every load also with a message hook returning True"
    )
    parser.add_argument(
        "--database", default=None, metavar="URL",
        help="a PostgreSQL server URL (each measurement creates a database on it), or "
        "'postgresql' to start a throwaway durable cluster; default: the instance's SQLite",
    )  # fmt: skip
    parser.add_argument(
        "--nodes", type=int, default=1, help="mxsmtp smtp nodes on one database (PostgreSQL)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="--workers for each node (default: its own)"
    )
    parser.add_argument(
        "--mxsmtp-bin", action="append", metavar="[NAME=]DIR",
        help="folder with the mxsmtp executable to measure (default: beside this Python); "
        "repeat with NAME= to compare builds in one run",
    )  # fmt: skip
    options = parser.parse_args()
    if not Path(SMTP_SOURCE).exists():
        raise SystemExit("smtp-source not found: apt-get install postfix (see the docstring)")
    if options.nodes < 1:
        raise SystemExit("--nodes must be at least 1")
    if options.nodes > 1 and not options.database:
        raise SystemExit(
            "--nodes N needs PostgreSQL (--database URL or --database postgresql): "
            "nodes share one database, and an SQLite file belongs to one machine's listener"
        )
    servers = servers_of(options)
    chosen = LOADS if options.loads == "all" else [LOADS[int(i)] for i in options.loads.split(",")]
    loads = [
        replace(base, messages=max(base.sessions, int(base.messages * options.scale)))
        for base in chosen
    ]
    if options.sustained > 0:
        loads.append(replace(SUSTAINED, duration=options.sustained))
    header = [f"command: {shlex.join([sys.executable, *sys.argv])}"]
    store: SQLiteStore | PostgresStore
    if not options.database:
        store = SQLiteStore()
    elif options.database == "postgresql":
        store = PostgresStore.throwaway()
    else:
        store = PostgresStore(options.database)
    header.append(
        f"database: {store.engine_name}; nodes: {options.nodes}; workers per node: "
        f"{options.workers if options.workers is not None else 'default'}; "
        f"cores: {os.cpu_count()}"
    )
    for folder in {s.bin_dir: None for s in servers if s.kind == "mxsmtp"}:
        header.append(f"build: {build_of(folder)}")
    print("\n".join(header), flush=True)
    results: list[Result] = []
    try:
        for load in loads:
            sent, attachment = build_message(load.size)
            with tempfile.NamedTemporaryFile(suffix=".eml") as message_file:
                message_file.write(sent)
                message_file.flush()
                for server in servers:
                    result = measure(
                        server, load, Path(message_file.name), sent, attachment, store,
                        options.nodes, options.workers,
                    )  # fmt: skip
                    drain = f", parsed after {result.drain_seconds:.1f} s" * (
                        server.kind == "mxsmtp"
                    )
                    print(
                        f"{load.name}: {server.label}: {result.rate:,.0f} msg/s "
                        f"({result.messages:,} in {result.seconds:.1f} s{drain}), "
                        f"peak {result.peak_mib:.0f} MiB, all processes "
                        f"{result.family_peak_mib:.0f} MiB",
                        flush=True,
                    )
                    results.append(result)
    finally:
        store.close()
        if results:
            report(results, header)


if __name__ == "__main__":
    main()
