"""A throwaway PostgreSQL cluster for the tests and benchmarks: `initdb` into a temporary
folder, a free loopback port, trust authentication on loopback only (it listens on nothing
else). Run as the `postgres` user when we are root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "mxsmtp"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0


@dataclass
class Cluster:
    folder: Path
    port: int
    bin: Path
    owner: str | None
    durable: bool = False

    @property
    def url(self) -> str:
        """The URL of its `postgres` database, as a superuser."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            self.pause()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server at once (as a crash would), keeping its data for `resume`."""
        _run(self, ["pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop"])

    def resume(self) -> None:
        """Start it again on the same port, with the same data."""
        _start(self)


def start_cluster(*, durable: bool = False) -> Cluster:
    """Start a cluster; `durable=False` (tests) turns fsync off: nothing here survives a
    power cut, but every commit still waits for the server."""
    binaries = bin_dir()
    if binaries is None:
        raise FileNotFoundError(
            "no initdb: install PostgreSQL (Debian: apt-get install postgresql)"
        )
    folder = Path(tempfile.mkdtemp(prefix="mxsmtp-pg-"))
    owner = "postgres" if os.geteuid() == 0 else None
    if owner is not None:
        uid = pwd.getpwnam(owner).pw_uid
        os.chown(folder, uid, -1)
    cluster = Cluster(folder, free_port(), binaries, owner)
    _run(
        cluster,
        ["initdb", "-D", str(folder / "data"), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8"]
        + ["--locale=C.UTF-8", "--no-sync"],
    )
    cluster.durable = durable
    _start(cluster)
    return cluster


def _start(cluster: Cluster) -> None:
    options = [
        "-c listen_addresses=127.0.0.1",
        f"-p {cluster.port}",
        f"-k {cluster.folder}",
        "-c max_connections=500",
        f"-c fsync={'on' if cluster.durable else 'off'}",
    ]
    data, log = cluster.folder / "data", cluster.folder / "log"
    _run(
        cluster,
        ["pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", " ".join(options)]
        + ["start"],
    )


def _run(cluster: Cluster, command: list[str]) -> None:
    command = [str(cluster.bin / command[0]), *command[1:]]
    if cluster.owner is not None:
        command = ["runuser", "-u", cluster.owner, "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
