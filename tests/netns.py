"""A bottleneck link between two network namespaces, for tests that measure congestion control (loopback has
no rate and no queue): ``a`` - ``r`` - ``b``, joined by veth pairs, with a token-bucket filter (``tbf``) on the
router ``r``'s way to ``b``.

The bottleneck sits on a router, not on the sender's own interface, as it does on a real path: a queue in the
sending host is seen by Linux's TCP Small Queues, which hold a TCP socket to a few kilobytes queued there
(measured: TCP pinned at 150 kB/s beside uTP's 100 ms of queue on a 2 MB/s link, the tbf dropping nothing),
so TCP could never build the delay that LEDBAT yields to. Packets forwarded by ``r`` belong to no socket.

Everything is created inside namespaces of our own (``tor-<pid>-<n>-a`` / ``-r`` / ``-b``; veth ends are born
in them), so the host's interfaces are never touched; teardown deletes the namespaces by name, which
destroys the veth pairs with them. Needs root and ``iproute2`` (``ip``, ``tc``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

_serial = itertools.count()


@dataclass(frozen=True)
class ShapedLink:
    """``a`` (address ``a_ip``) reaches ``b`` (``b_ip``) through ``r``, whose ``bottleneck`` device toward ``b``
    is shaped to ``rate_bps``; the way back is not shaped."""

    a: str
    r: str
    b: str
    a_ip: str
    b_ip: str
    bottleneck: str
    rate_bps: int

    def popen(self, ns: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` inside namespace ``ns`` (``self.a`` or ``self.b``); the caller stops it by PID."""
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)

    def qdisc_stats(self) -> str:
        """The tbf's counters (sent, dropped, backlog): what the bottleneck did, for failure messages."""
        return _run("tc", "-n", self.r, "-s", "qdisc", "show", "dev", self.bottleneck)


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def require_tools() -> None:
    """Fail (never skip) with what to install when namespaces cannot be made."""
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: install the Debian package 'iproute2'", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (CAP_NET_ADMIN)", pytrace=False)


@contextlib.contextmanager
def shaped_link(rate: str = "16mbit", burst: str = "32kb", latency: str = "400ms") -> Iterator[ShapedLink]:
    """``a`` 10.X.1.1/24 - 10.X.1.2 ``r`` 10.X.2.1 - 10.X.2.2/24 ``b``, links and ``lo`` up, ``r`` forwarding,
    and on ``r``'s device toward ``b`` ``tc qdisc add root tbf rate RATE burst BURST latency LATENCY``: a
    queue of ``latency`` at ``rate``, well past LEDBAT's 100 ms target, so a loss-based TCP can build delay."""
    require_tools()
    serial = next(_serial)
    tag = f"{os.getpid()}-{serial}"
    net = f"10.{(os.getpid() + serial) % 250 + 1}"  # private to the namespaces anyway
    ns = {side: f"tor-{tag}-{side}" for side in "arb"}
    dev = {name: f"t{tag}{name}"[-15:] for name in ("ar", "ra", "rb", "br")}  # 15 characters at most
    link = ShapedLink(a=ns["a"], r=ns["r"], b=ns["b"], a_ip=f"{net}.1.1", b_ip=f"{net}.2.2", bottleneck=dev["rb"],
                      rate_bps=_parse_rate(rate))
    try:
        for name in ns.values():
            _run("ip", "netns", "add", name)
        # Each veth pair is created inside the namespaces: nothing appears on the host, even for a moment.
        for left, right, subnet in (("a", "r", 1), ("r", "b", 2)):
            near, far = dev[left + right], dev[right + left]
            _run("ip", "-n", ns[left], "link", "add", near, "type", "veth", "peer", "name", far, "netns", ns[right])
            for side, device, host in ((left, near, 1), (right, far, 2)):
                _run("ip", "-n", ns[side], "addr", "add", f"{net}.{subnet}.{host}/24", "dev", device)
                _run("ip", "-n", ns[side], "link", "set", device, "up")
        for name in ns.values():
            _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", ns["a"], "route", "add", "default", "via", f"{net}.1.2")
        _run("ip", "-n", ns["b"], "route", "add", "default", "via", f"{net}.2.1")
        _run("ip", "netns", "exec", ns["r"], "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        _run("tc", "-n", ns["r"], "qdisc", "add", "dev", dev["rb"], "root", "tbf", "rate", rate, "burst", burst,
             "latency", latency)
        yield link
    finally:
        for name in ns.values():  # ours by name; deleting a namespace removes the veth ends inside it
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


def _parse_rate(rate: str) -> int:
    """tc's rate syntax (``16mbit``, ``500kbit``) in bits per second."""
    units = {"gbit": 10**9, "mbit": 10**6, "kbit": 10**3, "bit": 1}
    for unit, scale in units.items():
        if rate.endswith(unit):
            return int(float(rate[: -len(unit)]) * scale)
    raise ValueError(f"unknown rate {rate!r}: use bit, kbit, mbit or gbit")
