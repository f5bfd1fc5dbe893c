"""`HOST:PORT` strings (IPv4, `[IPv6]:PORT`, names) turned into socket addresses."""

from __future__ import annotations

import ipaddress
import socket


class AddressError(ValueError):
    """An address string is malformed."""


def parse_host_port(text: str) -> tuple[str, int]:
    """`127.0.0.1:5140` → ("127.0.0.1", 5140); `[::1]:5140` → ("::1", 5140)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise AddressError(f"{text!r} is not HOST:PORT (IPv6 as [addr]:PORT)")
    if host.startswith("["):
        if not host.endswith("]"):
            raise AddressError(f"{text!r}: unbalanced [ ] around the IPv6 address")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise AddressError(f"{text!r}: write IPv6 addresses as [addr]:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AddressError(f"{text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


def family_of(host: str) -> socket.AddressFamily:
    """AF_INET6 for IPv6 literals, AF_INET otherwise (names resolve to IPv4)."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
