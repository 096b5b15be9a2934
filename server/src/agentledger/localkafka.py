"""A real Apache Kafka broker (KRaft) for development, tests and the demo.

Resolves the pinned ``org.apache.kafka:kafka_2.13`` jars plus a log4j2 binding through Maven
into a per-user cache, writes a KRaft config (combined broker+controller per node, 127.0.0.1),
formats storage, starts the JVM(s) in the background, and waits until a metadata request
sees every broker. State (pids, ports) lives in ``<home>/cluster.json`` so ``down`` and
``status`` work from another process.

A stopped cluster keeps its data and its ports (``<home>/layout.json``): the next ``up``
starts the same nodes on the same addresses, so events, policies, commands and budgets
survive and every service that knew the address finds the broker again. ``fresh=True``
deletes the data first. Topics are never created by the broker itself
(``auto.create.topics.enable=false``): a compacted topic created by a stray client as a
delete-policy topic would silently lose the current state per key.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agentledger.errors import LauncherError, PortTaken
from agentledger.settings import pid_alive

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.agentledger</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentledger" / "kafka"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LauncherError(f"`{tool}` was not found on PATH. {hint}")
    return path


def resolve_jars(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """Download (once) the broker jars through Maven; return the folder of jars."""
    lib = cache_dir() / version / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = _require("mvn", "Install Maven (Debian: apt-get install maven) to fetch the Kafka jars.")
    work = lib.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_POM.format(kafka=version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION))
    tmp = work / "lib.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [mvn, "-B", "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise LauncherError(f"Maven could not fetch Kafka {version} jars:\n{tail}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.write_text(version)
    return lib


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free right now (for tests: no fixed port clashes)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in socks:
            sock.close()
    return ports


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    pid: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class ClusterState:
    version: str
    nodes: list[Node]
    started_at: float
    startup_s: float

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)


DEFAULT_PORT = 9092


def choose_ports(nodes: int, prefer: int | None = DEFAULT_PORT) -> list[int]:
    """``prefer`` .. ``prefer + 2*nodes - 1`` when all are free, else ports the OS says are free."""
    if prefer:
        wanted = [prefer + i for i in range(2 * nodes)]
        if all(port_free(p) for p in wanted):
            return wanted
    return free_ports(2 * nodes)


class LocalKafka:
    """One local cluster living under ``home`` (1 node, or 3 for fault tests)."""

    def __init__(self, home: Path, version: str = KAFKA_VERSION, heap: str = "512m") -> None:
        self.home = Path(home)
        self.version = version
        self.heap = heap
        self.state_file = self.home / "cluster.json"
        self.layout_file = self.home / "layout.json"

    # -- state -----------------------------------------------------------------------

    def load(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        raw = json.loads(self.state_file.read_text())
        nodes = [Node(**n) for n in raw.pop("nodes")]
        return ClusterState(nodes=nodes, **raw)

    def _save(self, state: ClusterState) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        doc = asdict(state)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.state_file)

    def status(self) -> tuple[ClusterState | None, list[int]]:
        """The recorded cluster and which node ids are alive."""
        state = self.load()
        if state is None:
            return None, []
        alive = [n.node_id for n in state.nodes if n.pid and pid_alive(n.pid)]
        return state, alive

    def kept(self) -> list[Node] | None:
        """The nodes (ports) of a stopped cluster whose data is kept, if any."""
        if not self.layout_file.exists():
            return None
        raw = json.loads(self.layout_file.read_text())
        nodes = [Node(n["node_id"], n["port"], n["controller_port"]) for n in raw["nodes"]]
        if not all((self.home / f"node-{n.node_id}" / "data" / "meta.properties").exists() for n in nodes):
            return None  # formatted storage is gone: nothing to keep
        return nodes

    def _save_layout(self, nodes: list[Node]) -> None:
        doc = {"nodes": [{"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port}
                         for n in nodes]}  # fmt: skip
        self.layout_file.write_text(json.dumps(doc, indent=2))

    def wipe(self) -> None:
        """Delete the kept data and layout (``up(fresh=True)``); refuses while running."""
        _, alive = self.status()
        if alive:
            raise LauncherError("the cluster is running: run `agentledger kafka down` first")
        self.layout_file.unlink(missing_ok=True)
        for ndir in self.home.glob("node-*"):
            shutil.rmtree(ndir, ignore_errors=True)

    def log_path(self, node_id: int) -> Path:
        return self.home / f"node-{node_id}" / "broker.log"

    # -- up --------------------------------------------------------------------------

    def up(
        self,
        nodes: int = 1,
        base_port: int | None = None,
        timeout: float = 60.0,
        ports: Sequence[int] | None = None,
        *,
        fresh: bool = False,
    ) -> ClusterState:
        """Start the cluster (idempotent: a running one is returned as it is).

        A stopped cluster comes back with its data on its previous ports; ``fresh`` deletes
        the data first. Otherwise ``ports`` (2 per node), or ``base_port`` and up, or free ports.
        """
        state, alive = self.status()
        if state is not None:
            if alive and len(alive) == len(state.nodes):
                return state
            if alive:
                raise LauncherError(
                    f"cluster under {self.home} is partly running (nodes {alive} of "
                    f"{[n.node_id for n in state.nodes]}); run `agentledger kafka down` first"
                )
            self.state_file.unlink()  # stale pid file: every process is gone
        _require("java", "Install Java 17+ (Debian: apt-get install openjdk-17-jre-headless).")
        if fresh:
            self.wipe()
        kept = self.kept()
        if kept is not None:
            ports = self._kept_ports(kept, nodes, base_port, ports)
        elif ports is None:
            ports = [base_port + i for i in range(2 * nodes)] if base_port else free_ports(2 * nodes)
        for port in ports:
            if not port_free(port):
                hint = (
                    "the kept data belongs to a cluster on this port: free it, or start over "
                    "elsewhere with --fresh (deletes the data)"
                    if kept
                    else "stop what holds it or choose another with --port"
                )
                raise LauncherError(f"port {port} on 127.0.0.1 is in use; {hint}")
        lib = resolve_jars(self.version)
        node_list = [Node(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(nodes)]
        cluster_id = self._cluster_id(lib)
        started = time.monotonic()
        for node in node_list:
            self._prepare(node, node_list, lib, cluster_id, keep=kept is not None)
        for node in node_list:
            node.pid = self._spawn(node, lib)
        state = ClusterState(self.version, node_list, time.time(), 0.0)
        self._save(state)
        try:
            wait_ready(
                state.bootstrap, len(node_list), timeout, self._check_alive(state),
                cluster_id=self._formatted_id(node_list[0]),
            )  # fmt: skip
        except LauncherError:
            self.down()
            raise
        self._save_layout(node_list)
        state.startup_s = round(time.monotonic() - started, 2)
        self._save(state)
        return state

    def _kept_ports(
        self, kept: list[Node], nodes: int, base_port: int | None, ports: Sequence[int] | None
    ) -> list[int]:
        """The kept cluster's ports; asking for other ones (or another size) is an error,
        because the services and the stored metadata know these."""
        old = [p for n in kept for p in (n.port, n.controller_port)]
        asked = list(ports) if ports else [base_port + i for i in range(2 * nodes)] if base_port else None
        if len(kept) != nodes or (asked is not None and asked != old):
            raise LauncherError(
                f"{self.home} keeps the data of a {len(kept)}-node cluster on "
                f"{','.join(n.address for n in kept)}; run `agentledger kafka up` without "
                "--port/--nodes to restart it, or add --fresh to delete its data and start over"
            )
        return old

    def _formatted_id(self, node: Node) -> str | None:
        """The cluster id in the node's formatted storage: what our broker answers with."""
        meta = self.home / f"node-{node.node_id}" / "data" / "meta.properties"
        for line in meta.read_text().splitlines() if meta.exists() else []:
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def _cluster_id(self, lib: Path) -> str:
        # Kafka cluster ids are base64url of 16 random bytes (22 chars); make one ourselves
        # instead of paying a JVM start for `kafka-storage random-uuid`.
        import base64

        while True:  # one id in 64 starts with "-", which kafka-storage's parser reads as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not cluster_id.startswith("-"):
                return cluster_id

    def _prepare(
        self, node: Node, all_nodes: list[Node], lib: Path, cluster_id: str, *, keep: bool = False
    ) -> None:
        ndir = self.home / f"node-{node.node_id}"
        data = ndir / "data"
        if not keep:
            shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        replication = min(3, len(all_nodes))
        min_isr = 2 if replication >= 3 else 1
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in all_nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": 4,
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": 8,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            # a topic is created by `agentledger topics create` or not at all: an auto-created
            # compacted topic would be a 4-partition delete-policy one (issue #13)
            "auto.create.topics.enable": "false",
            "log.cleaner.backoff.ms": 1000,
            "log.segment.bytes": 16 * 1024 * 1024,
        }
        (ndir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (ndir / "log4j2.yaml").write_text(_LOG4J2)
        if keep:
            return  # formatted before: its meta.properties holds the cluster id
        proc = subprocess.run(
            ["java", "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(ndir / "server.properties"), "--ignore-formatted"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LauncherError(f"formatting storage for node {node.node_id} failed:\n{proc.stderr[-2000:]}")

    def _spawn(self, node: Node, lib: Path) -> int:
        ndir = self.home / f"node-{node.node_id}"
        log = open(self.log_path(node.node_id), "ab")  # noqa: SIM115 - handed to the child
        cmd = [
            "java", "-Xms128m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={ndir / 'log4j2.yaml'}",
            "-cp", f"{lib}/*", "kafka.Kafka", str(ndir / "server.properties"),
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=ndir,
        )  # fmt: skip
        log.close()
        return proc.pid

    def _check_alive(self, state: ClusterState):  # type: ignore[no-untyped-def]
        def check() -> None:
            for node in state.nodes:
                if node.pid and not pid_alive(node.pid):
                    log = tail(self.log_path(node.node_id), 2000)
                    bind = [line for line in log.splitlines() if "failed to bind" in line]
                    error = PortTaken if bind else LauncherError
                    last = "\n".join(bind[:1] + log.splitlines()[-25:])
                    raise error(
                        f"broker node {node.node_id} exited during start-up. Last log lines:\n" + last
                    )

        return check

    # -- down ------------------------------------------------------------------------

    def down(self, timeout: float = 30.0) -> list[str]:
        """Stop every node: SIGTERM, wait, SIGKILL what is left. Returns what happened."""
        state = self.load()
        if state is None:
            return ["no cluster recorded under " + str(self.home)]
        report = []
        for node in state.nodes:
            if node.pid and pid_alive(node.pid):
                os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in state.nodes:
            if not node.pid:
                continue
            while pid_alive(node.pid) and time.monotonic() < deadline:
                _reap(node.pid)
                time.sleep(0.1)
            if pid_alive(node.pid):
                os.kill(node.pid, signal.SIGKILL)
                report.append(f"node {node.node_id} (pid {node.pid}) did not stop in {timeout:.0f}s: killed")
            else:
                report.append(f"node {node.node_id} (pid {node.pid}) stopped")
            _reap(node.pid)
        self.state_file.unlink(missing_ok=True)
        if self.kept() is not None:
            report.append(
                f"data kept under {self.home}: `agentledger kafka up` restarts it on {state.bootstrap} "
                "(`--fresh` deletes it)"
            )
        return report

    # -- fault injection (tests) -----------------------------------------------------

    def signal_node(self, node_id: int, sig: int) -> None:
        state = self.load()
        if state is None:
            raise LauncherError("no cluster running")
        node = next(n for n in state.nodes if n.node_id == node_id)
        if node.pid:
            os.kill(node.pid, sig)
            if sig == signal.SIGKILL:
                _wait_dead(node.pid)

    def restart_node(self, node_id: int, timeout: float = 60.0) -> None:
        """Start a stopped node again on its ports and data (fault tests)."""
        self.restart_nodes([node_id], timeout)

    def restart_nodes(self, node_ids: Sequence[int], timeout: float = 90.0) -> None:
        """Start stopped nodes together: after a whole-cluster outage no node can come up alone,
        because a KRaft broker opens its listener only once a controller quorum exists."""
        state = self.load()
        if state is None:
            raise LauncherError("no cluster running")
        nodes = [n for n in state.nodes if n.node_id in node_ids]
        for node in nodes:
            if node.pid and pid_alive(node.pid):
                raise LauncherError(f"node {node.node_id} is still running")
        lib = resolve_jars(self.version)
        for node in nodes:
            node.pid = self._spawn(node, lib)
        self._save(state)
        for node in nodes:
            wait_port(node.port, timeout)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.05)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise LauncherError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def wait_ready(  # type: ignore[no-untyped-def]
    bootstrap: str, brokers: int, timeout: float, check=lambda: None, *, cluster_id: str | None = None
) -> None:
    """Block until a metadata request answers with ``brokers`` brokers.

    With ``cluster_id``, only that cluster counts: another cluster that grabbed the port
    between our check and our broker's bind (the broker then exits) is not taken for ours.
    """

    from aiokafka import AIOKafkaClient  # type: ignore[attr-defined]
    from aiokafka.protocol.metadata import MetadataRequest

    async def probe() -> int:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await client.bootstrap()
            meta = await client.send(client.get_random_node(), MetadataRequest([]))
            answered = getattr(meta, "cluster_id", None)
            if cluster_id is not None and answered != cluster_id:
                raise LauncherError(f"{bootstrap} answers as cluster {answered}, not ours ({cluster_id})")
            return len(meta.brokers)
        finally:
            await client.close()

    import logging

    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "connection refused" while the JVM starts is expected
    try:
        _poll_ready(probe, brokers, timeout, check)
    finally:
        quiet.setLevel(level)


def _poll_ready(probe, brokers: int, timeout: float, check) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        check()
        try:
            seen = asyncio.run(asyncio.wait_for(probe(), 5))
            if seen >= brokers:
                return
            last = f"{seen} of {brokers} brokers registered"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    raise LauncherError(f"Kafka not ready after {timeout:.0f}s ({last})")
