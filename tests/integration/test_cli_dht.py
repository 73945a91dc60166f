"""``torrent dht`` run as a real process against a small DHT of our own nodes on 127.0.0.1: the status after
the bootstrap (text and JSON), the routing table saved in the state directory and used by the next run, a
ping answered with the node's id, a lookup finding the peers announced into the network, and one-line
errors: exit 1 when nothing answers, exit 2 for what the user typed.

Every run is bound to 127.0.0.1 with the test network as its only router, and its config home keeps
discovery on the loopback interface: no public router is ever contacted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from helpers import loopback_config_home

from torrent.dht.node import DhtNode

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
LOCAL = "127.0.0.1"
FAST = 10_000.0  # every node and the CLI share one address: the per-address query rate must not bite
INFO_HASH = hashlib.sha1(b"torrent dht peers").digest()
ANNOUNCED = [(LOCAL, 6881), (LOCAL, 51413)]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Network:
    nodes: list[tuple[DhtNode, tuple[str, int]]]
    env: dict[str, str]
    state: Path

    @property
    def router(self) -> str:
        host, port = self.nodes[0][1]
        return f"{host}:{port}"

    async def run(self, *args: str, router: str | None = None) -> Result:
        """``python -m torrent dht ARGS`` on 127.0.0.1; this loop keeps answering for the nodes meanwhile."""
        command = [sys.executable, "-m", "torrent", "dht", *args, "--bind", LOCAL, "--port", "0",
                   "--dht-bootstrap", router or self.router, "--no-lsd", "--no-port-map",
                   "--state-dir", str(self.state), "--set", "discovery.dht_query_timeout=0.5"]
        proc = await asyncio.create_subprocess_exec(*command, env=self.env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        result = Result(proc.returncode or 0, out.decode(), err.decode())
        assert "Traceback" not in result.out + result.err, result.err
        return result


@pytest_asyncio.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    """Four nodes that found each other through the first; two peers announced for ``INFO_HASH`` on each."""
    nodes = []
    for _ in range(4):
        node = DhtNode(timeout=0.5, query_rate=FAST)
        nodes.append((node, await node.open(LOCAL, 0)))
    for node, _ in nodes[1:]:
        await node.bootstrap([nodes[0][1]])
    for node, _ in nodes:
        for host, port in ANNOUNCED:
            node.store.announce(INFO_HASH, host, port, time.monotonic())
    env = {k: v for k, v in os.environ.items() if k != "TORRENT_PURE_PYTHON"}
    env["XDG_CONFIG_HOME"] = loopback_config_home(tmp_path / "cfg")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    yield Network(nodes, env, tmp_path / "state")
    for node, _ in nodes:
        node.close()


def one_error_line(result: Result, code: int) -> str:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("torrent: error: ")
    return lines[0]


async def test_status_after_the_bootstrap(network: Network) -> None:
    result = await network.run("status")
    assert result.code == 0, result.err
    fields = dict(re.findall(r"^([A-Za-z ]+):\s+(.*)$", result.out, re.M))
    assert int(fields["Nodes"].split()[0]) >= 3, result.out  # the router and the nodes it named
    assert re.fullmatch(r"[0-9a-f]{40}", fields["Node id"])
    assert fields["UDP port"].isdigit() and int(fields["UDP port"]) > 0
    assert fields["External IP"].startswith((LOCAL, "unknown"))
    assert fields["Bootstrap"].startswith(network.router) and "(done in" in fields["Bootstrap"]
    assert fields["Port mapping"] == "off"
    assert our_ids(network).isdisjoint({fields["Node id"]})


async def test_status_json_and_the_table_saved_for_the_next_run(network: Network) -> None:
    first = await network.run("--json")
    assert first.code == 0, first.err
    status = json.loads(first.out)
    assert status["nodes"] >= 3 and status["nodes_good"] >= 1 and status["buckets"] >= 1
    assert status["bootstrap_settled"] is True and status["restored_nodes"] == 0
    assert status["queries_out"] >= status["replies_in"] >= 3
    assert (network.state / "dht.dat").is_file()  # closed cleanly: the table is saved

    # The next run starts from the saved table (and keeps its id), even with a router that is gone.
    dead = silent_socket()
    second = await network.run("--json", router=f"{LOCAL}:{dead.getsockname()[1]}")
    dead.close()
    assert second.code == 0, second.err
    again = json.loads(second.out)
    assert again["node_id"] == status["node_id"]
    assert again["restored_nodes"] >= 3 and again["nodes"] >= 3


async def test_status_with_no_node_answering_is_exit_1(network: Network) -> None:
    dead = silent_socket()
    result = await network.run("--wait", "5", router=f"{LOCAL}:{dead.getsockname()[1]}")
    dead.close()
    line = one_error_line(result, 1)
    assert "no DHT node answered" in line
    assert re.search(r"^Nodes:\s+none", result.out, re.M), result.out  # the report still says what it saw


async def test_ping_gives_the_nodes_id(network: Network) -> None:
    node, (host, port) = network.nodes[2]
    result = await network.run("ping", f"{host}:{port}")
    assert result.code == 0, result.err
    assert re.fullmatch(rf"{host}:{port}: node {node.node_id.hex()} answered in \d+\.\d ms\n", result.out)

    as_json = json.loads((await network.run("ping", f"localhost:{port}", "--json")).out)
    assert as_json["node_id"] == node.node_id.hex() and as_json["ip"] == LOCAL and as_json["seconds"] < 0.5


async def test_ping_of_a_dead_address_is_one_line_and_exit_1(network: Network) -> None:
    dead = silent_socket()
    port = dead.getsockname()[1]
    result = await network.run("ping", f"{LOCAL}:{port}")
    dead.close()
    line = one_error_line(result, 1)
    assert f"{LOCAL}:{port}" in line and "no reply" in line
    assert result.out == ""


async def test_peers_finds_the_announced_peers(network: Network) -> None:
    result = await network.run("peers", INFO_HASH.hex())
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"{INFO_HASH.hex()}: 2 peers"
    assert sorted(line.strip() for line in lines[1:3]) == sorted(f"{h}:{p}" for h, p in ANNOUNCED)
    asked = re.fullmatch(r"asked (\d+) nodes, (\d+) answered, in (\d+ ms|\d+\.\d\d s)", lines[3])
    assert asked and int(asked[1]) >= 3 and int(asked[2]) >= 3

    magnet = f"magnet:?xt=urn:btih:{INFO_HASH.hex().upper()}&dn=example"
    found = json.loads((await network.run("peers", magnet, "--json")).out)
    assert found["info_hash"] == INFO_HASH.hex()
    assert sorted(found["peers"]) == sorted(f"{h}:{p}" for h, p in ANNOUNCED)


async def test_peers_with_no_node_to_ask_is_exit_1(network: Network) -> None:
    dead = silent_socket()
    result = await network.run("peers", INFO_HASH.hex(), router=f"{LOCAL}:{dead.getsockname()[1]}")
    dead.close()
    assert "no DHT node to ask" in one_error_line(result, 1)


@pytest.mark.parametrize("args,message", [
    (["ping", "127.0.0.1"], "invalid DHT node"),
    (["ping", "127.0.0.1:0"], "invalid DHT node"),
    (["ping"], "needs the node's HOST:PORT"),
    (["peers", "0123"], "invalid info-hash"),
    (["peers", "magnet:?xt=urn:btmh:1220" + "ab" * 32], "only a v2 hash"),
    (["peers", "magnet:?dn=nothing"], "magnet"),
    (["status", "extra"], "takes no argument"),
    (["--no-dht"], "--no-dht"),
    (["--set", "discovery.dht=false"], "the DHT, which is off"),
    (["--wait", "-1"], "--wait"),
    (["bogus"], "invalid choice"),
], ids=["no-port", "port-0", "ping-alone", "short-hash", "v2-magnet", "no-hash-magnet", "status-arg", "no-dht",
        "dht-off", "wait", "action"])
async def test_usage_errors_are_one_line_and_exit_2(network: Network, args: list[str], message: str) -> None:
    result = await network.run(*args)
    assert message in one_error_line(result, 2)
    assert not (network.state / "dht.dat").exists()  # refused before any session started


def silent_socket() -> socket.socket:
    """A bound UDP socket nobody reads: an address where queries go unanswered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    return sock


def our_ids(network: Network) -> set[str]:
    return {node.node_id.hex() for node, _ in network.nodes}
