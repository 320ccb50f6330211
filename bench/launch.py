"""Starting servers for the benchmarks: a free loopback port, `mxsmtp smtp` on a fresh
instance with the settings a load needs, waiting for the greeting, and reading a process's
memory from /proc. Shared by ingest.py and soak.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    """Until the server on `port` sends its 220 greeting; raises if it exits or is slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if connection.recv(100).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def mxsmtp_env(instance: Path, database_url: str | None = None) -> dict[str, str]:
    """The environment of an mxsmtp command on `instance`: its SQLite file, or the database
    `database_url` names (MXSMTP_DATABASE_URL)."""
    env = {**os.environ, "MXSMTP_INSTANCE": str(instance)}
    env.pop("MXSMTP_DATABASE_URL", None)
    env.pop("MXSMTP_LISTEN", None)
    if database_url:
        env["MXSMTP_DATABASE_URL"] = database_url
    return env


def configure_mxsmtp(
    instance: Path,
    port: int,
    host_name: str,
    *,
    bin_dir: Path = BIN,
    database_url: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> None:
    """The settings a load needs, shared by every node of the database. Every session of a
    load generator comes from 127.0.0.1, so the per-address session limit is lifted."""
    env = mxsmtp_env(instance, database_url)
    settings = (
        ("port", str(port)),
        ("host_name", host_name),
        ("max_sessions_per_peer", "1000"),
        *extra,
    )
    for key, value in settings:
        subprocess.run(
            [bin_dir / "mxsmtp", "settings", "set", key, value],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def start_node(
    instance: Path,
    *,
    bin_dir: Path = BIN,
    database_url: str | None = None,
    listen: str | None = None,
    workers: int | None = None,
    output: IO[bytes] | int = subprocess.DEVNULL,
) -> subprocess.Popen:
    """`mxsmtp smtp` on a configured instance; `listen` (ADDRESS:PORT) and `workers` are
    passed only when given, so a build without those options can be started too."""
    command = [str(bin_dir / "mxsmtp"), "smtp"]
    if listen is not None:
        command += ["--listen", listen]
    if workers is not None:
        command += ["--workers", str(workers)]
    return subprocess.Popen(
        command,
        env=mxsmtp_env(instance, database_url),
        stdout=output,
        stderr=subprocess.STDOUT,
        # not from this checkout: release 0.1's fork server imported from the current folder
        cwd=instance.parent,
    )


def start_mxsmtp(
    instance: Path,
    port: int,
    host_name: str,
    output: IO[bytes] | int = subprocess.DEVNULL,
    *,
    bin_dir: Path = BIN,
    database_url: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> subprocess.Popen:
    """`mxsmtp smtp` on `instance` (a fresh one, or one on `database_url`), listening on
    `port`, with the settings a load needs plus `extra`."""
    configure_mxsmtp(
        instance, port, host_name, bin_dir=bin_dir, database_url=database_url, extra=extra
    )
    return start_node(instance, bin_dir=bin_dir, database_url=database_url, output=output)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of `pid`, in KiB, from /proc; {} once the process is gone."""
    values: dict[str, int] = {}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def family_pss_kib(pid: int) -> int:
    """The memory of `pid` and every process under it (mxsmtp's writer, fork server and
    parsers) as PSS, in KiB: pages they share are counted once, not once per process."""
    total = 0
    for member in _family(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def _family(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    family, waiting = [], [pid]
    while waiting:
        member = waiting.pop()
        family.append(member)
        waiting.extend(children.get(member, []))
    return family
