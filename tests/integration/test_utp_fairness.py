"""uTP yields to TCP (issue 14): LEDBAT backs off when a loss-based TCP flow builds delay at a shared bottleneck.

Namespace ``a`` reaches ``b`` through a router whose link onward is shaped to 16 Mbit/s (a home uplink) with
400 ms of queue (tests/netns.py). The sender in ``a`` streams over uTP alone, then over TCP (cubic) too; the
receiver in ``b`` counts each flow's bytes per 100 ms (tests/utp_flow.py). Asserted within the one run: uTP
alone used more than half the link (it could have kept it), and while both ran TCP got at least 70 % of the
bytes that crossed it: the ~200 KB window uTP holds at its 100 ms target must be given back within seconds.
The rates are printed (``pytest -s``) and are in the assertion message."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path

from netns import ShapedLink, shaped_link

FLOW = str(Path(__file__).resolve().parent.parent / "utp_flow.py")
UTP_PORT, TCP_PORT = 6881, 6882
ALONE = 2.0  # seconds of uTP alone
BOTH = 6.0  # seconds of uTP and TCP together
UTP_START = 0.5  # seconds of uTP's slow start left out of its rate alone
TCP_START = 1.0  # seconds of TCP's slow start left out of the shared measurement
MIN_TCP_SHARE = 0.70
MIN_UTP_ALONE = 0.50  # of the link's rate
RATE, BURST, QUEUE = "16mbit", "32kb", "400ms"  # tbf: a queue of QUEUE at RATE, well past LEDBAT's target


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()  # by PID: Popen signals exactly this process
        proc.wait(5)


def _run_flows(link: ShapedLink) -> tuple[dict, dict]:
    """Start the receiver in ``b``, then the sender in ``a``; their JSON reports."""
    receiver = link.popen(link.b, [sys.executable, FLOW, "receive", link.b_ip, str(UTP_PORT), str(TCP_PORT)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = None
    try:
        assert receiver.stdout is not None
        started, _, _ = select.select([receiver.stdout], [], [], 15)
        ready = receiver.stdout.readline() if started else "(nothing in 15 s)"
        assert ready.strip() == "ready", f"receiver did not start: {ready!r} {receiver.communicate(timeout=5)}"
        sender = link.popen(link.a, [sys.executable, FLOW, "send", link.b_ip, str(UTP_PORT), str(TCP_PORT),
                                     str(ALONE), str(BOTH)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sent, sent_err = sender.communicate(timeout=ALONE + BOTH + 15)
        assert sender.returncode == 0, f"sender failed: {sent_err}"
        received, received_err = receiver.communicate(timeout=15)
        assert receiver.returncode == 0, f"receiver failed: {received_err}"
        return json.loads(received), json.loads(sent)
    finally:
        for proc in (sender, receiver):
            if proc is not None:
                _stop(proc)


def _rate(bins: list[int], bin_s: float, start: float, end: float) -> float:
    """Bytes per second over the bins wholly inside [start, end)."""
    first, last = int(-(-start // bin_s)), int(end // bin_s)
    return sum(bins[first:last]) / ((last - first) * bin_s)


def test_utp_yields_to_tcp_at_a_shared_bottleneck():
    with shaped_link(rate=RATE, burst=BURST, latency=QUEUE) as link:
        received, sent = _run_flows(link)
        qdisc = link.qdisc_stats()
    bin_s = received["bin"]
    utp_first, tcp_first = received["utp_first"], received["tcp_first"]
    assert utp_first is not None and tcp_first is not None, f"a flow never arrived: {received}"
    link_rate = link.rate_bps / 8
    utp_alone = _rate(received["utp"], bin_s, utp_first + UTP_START, tcp_first)
    both_start, both_end = tcp_first + TCP_START, tcp_first + BOTH - 0.5  # the last half second may be cut
    utp_both = _rate(received["utp"], bin_s, both_start, both_end)
    tcp_both = _rate(received["tcp"], bin_s, both_start, both_end)
    share = tcp_both / (tcp_both + utp_both)
    report = (f"link {link_rate / 1e3:.0f} kB/s; uTP alone {utp_alone / 1e3:.0f} kB/s "
              f"({utp_alone / link_rate:.0%} of the link); both running: TCP {tcp_both / 1e3:.0f} kB/s, "
              f"uTP {utp_both / 1e3:.0f} kB/s, TCP's share {share:.1%}")
    print(f"\n{report}")
    detail = (f"{report}\nevery {sent['bin']} s, uTP's cwnd (bytes): {sent['cwnd']}\n"
              f"and TCP's RTT (ms, from the start of TCP): {sent['tcp_rtt']}\n{qdisc}")
    assert utp_alone > MIN_UTP_ALONE * link_rate, f"uTP alone did not fill the link: {detail}"
    assert share >= MIN_TCP_SHARE, f"uTP did not yield to TCP: {detail}"
