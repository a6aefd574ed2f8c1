"""Which address workers on other machines can reach the chief at."""

from __future__ import annotations

import ipaddress
import socket

LOOPBACK = ("127.0.0.1", "127.0.0.1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("10.0.0.5")
    (True, True, False)
    """
    if host in ("localhost", "", "inproc"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def route_to(host: str | None) -> str:
    """This machine's address on the route to ``host`` (a UDP socket's local end: nothing is sent), or its
    hostname's address when there is no such route."""
    target = host or "10.255.255.255"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((socket.gethostbyname(target), 9))
            return probe.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def addresses_for(peer: str | None) -> tuple[str, str]:
    """``(bind, advertise)`` for a chief whose workers are where ``peer`` is (a scheduler's or head's host):
    loopback when the peer is this machine, else every interface, advertised on the route to the peer."""
    if peer is not None and is_loopback(peer):
        return LOOPBACK
    return "0.0.0.0", route_to(peer)
