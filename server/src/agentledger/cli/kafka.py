"""``agentledger kafka up|down|status``: the project's own local Kafka (KRaft) cluster."""

from __future__ import annotations

import typer

from agentledger.cli._common import console, kafka_home, settings

kafka = typer.Typer(
    help="Run a local Apache Kafka broker (KRaft) from Maven Central jars.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(kafka, name="kafka")


@kafka.command()
def up(
    nodes: int = typer.Option(
        None, "--nodes", min=1, max=5, help="1 (default) or 3: replication 3 / min ISR 2."
    ),
    port: int = typer.Option(
        None,
        "--port",
        help="First port; node i uses port+2i and port+2i+1. Default: the stopped cluster's "
        "ports, else 9092 when free, else any free port (printed).",
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="Delete the kept data (events, policies, commands, budgets) first."
    ),
    timeout: float = typer.Option(90.0, help="Seconds to wait for the cluster to be ready."),
) -> None:
    """Start the local cluster (or reuse the running one) and print the bootstrap address.

    After `kafka down`, `up` restarts the same cluster with its data on the same ports."""
    from agentledger.errors import PortTaken
    from agentledger.localkafka import DEFAULT_PORT, LocalKafka, choose_ports

    s = settings()
    if s.kafka_bootstrap:
        console.print(f"AGENTLEDGER_KAFKA_BOOTSTRAP={s.kafka_bootstrap} is set: nothing launched.")
        return
    local = LocalKafka(kafka_home(s), s.kafka_version)
    before, alive = local.status()
    if before is not None and alive and len(alive) == len(before.nodes):
        console.print(f"already running: {before.bootstrap}")
        typer.echo(before.bootstrap)
        return
    kept = None if fresh else local.kept()
    nodes = nodes or (len(kept) if kept else 1)
    ports = None
    if kept is not None:
        what = f"restarting the stopped cluster with its data on {','.join(n.address for n in kept)}"
    else:
        what = "starting a new cluster"
        if port is None:
            ports = choose_ports(nodes, DEFAULT_PORT)
            if ports[0] != DEFAULT_PORT:
                what += f" (port {DEFAULT_PORT} is taken: using {ports[0]})"
    console.print(
        f"Kafka {s.kafka_version} ({nodes} node{'s' if nodes > 1 else ''}) under {local.home}: {what} ..."
    )
    for attempt in range(3):
        try:
            state = local.up(nodes=nodes, base_port=port, ports=ports, timeout=timeout, fresh=fresh)
            break
        except PortTaken:
            if ports is None or attempt == 2:
                raise  # the user's --port or the kept cluster's ports: theirs to free
            ports = choose_ports(nodes, None)  # another process took them after our check
            console.print(f"a port was taken while the broker started: retrying on {ports[0]}")
    console.print(f"ready in {state.startup_s:.1f}s at {state.bootstrap}")
    typer.echo(state.bootstrap)


@kafka.command()
def down() -> None:
    """Stop the local cluster cleanly (SIGTERM, wait, SIGKILL what is left)."""
    from agentledger.localkafka import LocalKafka

    s = settings()
    for line in LocalKafka(kafka_home(s), s.kafka_version).down():
        console.print(line)


@kafka.command()
def status() -> None:
    """Tell whether the local cluster runs, and where. Exit 1 when it does not."""
    from agentledger.localkafka import LocalKafka

    s = settings()
    if s.kafka_bootstrap:
        console.print(f"using AGENTLEDGER_KAFKA_BOOTSTRAP={s.kafka_bootstrap} (not launched here)")
        return
    local = LocalKafka(kafka_home(s), s.kafka_version)
    state, alive = local.status()
    if state is None:
        kept = local.kept()
        if kept is not None:
            where = ",".join(n.address for n in kept)
            console.print(f"not running (stopped; data kept: `agentledger kafka up` restarts it on {where})")
        else:
            console.print("not running (nothing recorded under " + str(local.home) + ")")
        raise typer.Exit(1)
    for node in state.nodes:
        mark = "running" if node.node_id in alive else "DEAD"
        console.print(f"node {node.node_id}: {mark} pid={node.pid} {node.address}")
    if len(alive) != len(state.nodes):
        console.print("stale or partial: run `agentledger kafka down` then `up`")
        raise typer.Exit(1)
    typer.echo(state.bootstrap)


@kafka.command()
def fetch() -> None:
    """Download the pinned broker jars through Maven into the per-user cache (done once)."""
    from agentledger.localkafka import resolve_jars

    lib = resolve_jars(settings().kafka_version)
    console.print(f"Kafka {settings().kafka_version} jars in {lib} ({len(list(lib.glob('*.jar')))} jars)")
