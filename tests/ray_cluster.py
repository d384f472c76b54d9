"""A Ray cluster of several nodes on this machine's loopback addresses, started and stopped by a test or a
bench: a head (``ray start --head``) and more nodes (``ray start --address``), each with its own CPU count.

Ray turns ``127.0.0.1`` and ``localhost`` into the machine's network address, so its nodes would then talk
over that interface; other loopback addresses it takes as given. The head is on ``127.0.0.2`` and node n on
``127.0.0.{2+n}``: every connection stays on the loopback interface, and Ray sees nodes of distinct IPs.

Stopping kills what the cluster started, and only that, by pid: the processes of the process groups of its
``ray start`` commands (the daemons keep their group), their descendants (workers get groups of their own),
and any process whose environment carries this cluster's own marker (a worker whose raylet died first; a
process that renamed itself, ``ray::…``, may have overwritten it, hence the groups). ``ray stop`` would kill
every Ray process of the machine, another test's or bench's cluster included.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
MARKER = "NEWSRAG_TEST_RAY_CLUSTER"
START_TIMEOUT_S = 90


def node_ip(n: int) -> str:
    """The loopback address of node ``n`` (0: the head)."""
    return f"127.0.0.{2 + n}"


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalCluster:
    """A head and nodes on loopback addresses, in their own temp folder; ``stop()`` ends every process of it."""

    def __init__(self, env: dict | None = None):
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live under it
        self.port = free_port(node_ip(0))
        self.nodes, self.groups = 0, set()
        self.env = {**os.environ, **(env or {}), MARKER: self.temp_dir, "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

    @property
    def address(self) -> str:
        """The head's HOST:PORT, what ``rag index --ray`` is given."""
        return f"{node_ip(0)}:{self.port}"

    def start_head(self, cpus: int = 1) -> None:
        """``ray start --head`` on node_ip(0), without the dashboard."""
        self._ray_start("--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--dashboard-port={free_port(node_ip(0))}", f"--temp-dir={self.temp_dir}", cpus=cpus)

    def add_node(self, cpus: int = 1) -> None:
        """One more node, ``ray start --address`` the head, with ``cpus`` CPUs."""
        self._ray_start(f"--address={self.address}", cpus=cpus)

    def _ray_start(self, *args: str, cpus: int) -> None:
        command = [RAY, "start", *args, f"--node-ip-address={node_ip(self.nodes)}", f"--num-cpus={cpus}",
                   "--num-gpus=0", "--object-store-memory=150000000", "--disable-usage-stats"]
        start = subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
        self.groups.add(start.pid)  # its own process group, which the daemons it starts keep
        try:
            out, _ = start.communicate(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            start.kill()
            out, _ = start.communicate()
        if start.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({start.returncode}):\n{out}")
        self.nodes += 1

    def wait_for_nodes(self, count: int, timeout: float = 60.0) -> None:
        """Return once ``count`` nodes are alive (asked through a short-lived driver)."""
        code = ("import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); "
                "print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                                 text=True, timeout=timeout)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} Ray nodes not alive after {timeout:.0f} s: {out.stdout}{out.stderr}")
            time.sleep(1)

    def processes(self) -> list[int]:
        """Pids of the live processes this cluster started: in its process groups, carrying its marker, or
        descending from one of those."""
        token, table = f"{MARKER}={self.temp_dir}".encode(), {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except (OSError, IndexError):
                continue
            if stat[0] != "Z":  # a zombie is dead already, waiting for its parent
                table[int(entry)] = (int(stat[1]), int(stat[2]), token in environ.split(b"\0"))
        mine = {pid for pid, (_, group, marked) in table.items() if group in self.groups or marked}
        while more := {pid for pid, (parent, _, _) in table.items() if parent in mine} - mine:
            mine |= more
        return sorted(mine)

    def stop(self, timeout: float = 20.0) -> None:
        """Kill every process of the cluster, wait until they are gone, remove the temp folder."""
        deadline = time.monotonic() + timeout
        while (pids := self.processes()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if pids:
            raise RuntimeError(f"Ray processes {pids} still alive after {timeout:.0f} s")


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, env: dict | None = None) -> Iterator[LocalCluster]:
    """A cluster of ``nodes`` nodes of ``cpus`` CPUs each, stopped on the way out whatever happened."""
    cluster = LocalCluster(env)
    try:
        cluster.start_head(cpus)
        for _ in range(nodes - 1):
            cluster.add_node(cpus)
        cluster.wait_for_nodes(nodes)
        yield cluster
    finally:
        cluster.stop()
