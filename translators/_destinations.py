"""Where an upstream call may connect: the destination policy (issue 10).

A tenant chooses its provider's `base_url`, so without a policy the gateway would open a
connection, with the tenant's prompt and often a credential, to any address the gateway
can reach: a cloud metadata service, the gateway's own admin API, a database port on the
private network. The decision is made on every address a host name *resolves to*, when a
connection is opened (the connector in `_http.py` calls `DestinationPolicy.refusal`), not
on the URL's host name: a name that resolves to a metadata address, or that is re-pointed
at one after an earlier check (DNS rebinding), is refused all the same.

- Always refused: link-local (169.254.0.0/16, fe80::/10, which holds every cloud's
  169.254.169.254), the metadata and platform addresses outside it (AWS fd00:ec2::254,
  Alibaba 100.100.100.200, Azure's WireServer 168.63.129.16), "this host" (0.0.0.0/8, ::),
  multicast and reserved ranges. No setting re-opens them: no LLM API lives there.
- Loopback, private (10/8, 172.16/12, 192.168/16, CGNAT 100.64/10) and unique-local
  (fc00::/7): `upstream.private_networks` (`allow` by default, since self-hosted ChatGLM
  or TGI usually live there; `deny` for a public multi-tenant service) unless the host
  or the address is in `upstream.allow_hosts` (host names and CIDRs).
- The gateway's own port on a loopback address, on its listening address, or (when it
  listens on a wildcard address) on any address of this machine: always refused, so a
  tenant cannot reach the admin API through the gateway. Other loopback ports (a
  self-hosted model, the tests' fakes) follow the setting.

IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 IPv6 addresses are judged as
the IPv4 address they carry. Verdicts are cached per address string: a check costs a dict
lookup, and it only runs when a new connection is opened, not per request.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["DestinationPolicy", "Verdict", "classify"]


class Verdict(enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"        # loopback, private, CGNAT, unique-local: follows the setting
    REFUSED = "refused"        # link-local, metadata, this-host, multicast, reserved


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",   # AWS, GCP, Azure, Oracle, DigitalOcean... (also inside link-local)
    "fd00:ec2::254",     # AWS IMDS over IPv6 (inside fc00::/7, which may be allowed)
    "100.100.100.200",   # Alibaba Cloud (inside CGNAT 100.64/10, which may be allowed)
    "168.63.129.16",     # Azure WireServer / platform host (a public address)
))
_ALWAYS_REFUSED = _nets("0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
                        "::/128", "fe80::/10", "ff00::/8")
_PRIVATE = _nets("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                 "::1/128", "fc00::/7")
_LOOPBACK = _nets("127.0.0.0/8", "::1/128")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
_CACHE_LIMIT = 4096


def _embedded_v4(addr: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for, where it stands for one."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if addr.sixtofour is not None:
            return addr.sixtofour
        if addr.scope_id:  # fe80::1%eth0: the scope does not change what the address is
            return ipaddress.IPv6Address(str(addr).split("%", 1)[0])
    return addr


def parse_address(text: str) -> IPAddress | None:
    try:
        return _embedded_v4(ipaddress.ip_address(text))
    except ValueError:
        return None


def classify(addr: IPAddress) -> Verdict:
    addr = _embedded_v4(addr)
    if addr in _METADATA or any(addr in net for net in _ALWAYS_REFUSED):
        return Verdict.REFUSED
    if any(addr in net for net in _PRIVATE):
        return Verdict.PRIVATE
    return Verdict.PUBLIC


def _local_addresses() -> frozenset[IPAddress]:
    """This machine's own addresses (for a gateway listening on a wildcard address).
    Linux lists them in /proc; elsewhere the host name's addresses are the best guess."""
    found: set[IPAddress] = set()
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for prev, line in zip(lines, lines[1:], strict=False):
            if "/32 host LOCAL" in line and "|--" in prev:
                if (addr := parse_address(prev.split("|--", 1)[1].strip())) is not None:
                    found.add(addr)
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(ipaddress.IPv6Address(int(line.split()[0], 16)))
    with contextlib.suppress(OSError, UnicodeError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            if (addr := parse_address(str(info[4][0]))) is not None:
                found.add(addr)
    return frozenset(found)


class DestinationPolicy:
    """The operator's policy; `refusal()` says why a connection must not be opened (or None)."""

    def __init__(self, private_networks: Literal["allow", "deny"] = "allow", allow_hosts: Iterable[str] = (),
                 own_host: str | None = None, own_port: int | None = None) -> None:
        self.allow_private = private_networks == "allow"
        names: set[str] = set()
        nets: list[IPNetwork] = []
        for entry in allow_hosts:
            entry = entry.strip().lower().rstrip(".")
            try:
                nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if entry:
                    names.add(entry)
        self._allowed_names = frozenset(names)
        self._allowed_nets = tuple(nets)
        self.own_port = own_port or None
        # The gateway's own listening addresses; None = every address of this machine.
        self._own: frozenset[IPAddress] | None = frozenset()
        if own_port and own_host is not None:
            self._own = None if own_host.strip("[]") in _WILDCARDS else self._resolve_own(own_host)
        self._local: frozenset[IPAddress] | None = None
        self._verdicts: dict[str, tuple[IPAddress | None, Verdict, bool]] = {}

    @staticmethod
    def _resolve_own(host: str) -> frozenset[IPAddress] | None:
        if (addr := parse_address(host.strip("[]"))) is not None:
            return frozenset({addr})
        try:  # a name (e.g. localhost): once, at start-up
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return None  # unknown: treat every local address as ours, the safe side
        return frozenset(a for info in infos if (a := parse_address(str(info[4][0]))) is not None)

    def _judge(self, address: str) -> tuple[IPAddress | None, Verdict, bool]:
        """(parsed address, verdict, in the allow-list's CIDRs), cached per address string."""
        cached = self._verdicts.get(address)
        if cached is None:
            addr = parse_address(address)
            if addr is None:  # not an IP address: nothing can be said about it, so it is refused
                cached = (None, Verdict.REFUSED, False)
            else:
                cached = (addr, classify(addr), any(addr in net for net in self._allowed_nets))
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[address] = cached
        return cached

    def _is_own(self, addr: IPAddress, port: int) -> bool:
        if port != self.own_port:
            return False
        if any(addr in net for net in _LOOPBACK):
            return True
        if self._own is None:
            if self._local is None:
                self._local = _local_addresses()
            return addr in self._local
        return addr in self._own

    def refusal(self, host: str, address: str, port: int) -> str | None:
        """Why `host` (as named in the URL), resolved to `address`, may not be reached on
        `port`; None when it may. The reason never quotes the address: where a tenant's host
        name resolves inside the operator's network is not the tenant's to learn."""
        addr, verdict, listed = self._judge(address)
        if verdict is Verdict.REFUSED or addr is None:
            return "a link-local, cloud-metadata or reserved address, which is never allowed"
        if self.own_port is not None and self._is_own(addr, port):
            return "the gateway itself"
        if verdict is Verdict.PRIVATE and not self.allow_private and not listed:
            if host.lower().rstrip(".") not in self._allowed_names:
                return "a private-network address, and upstream.private_networks is deny"
        return None
