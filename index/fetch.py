"""Fetching feeds and article pages over HTTP: politely, within limits, and only from public addresses.

Feed URLs come from users, so a fetch could be aimed at the machine itself or its network (SSRF: a
cloud's metadata service at 169.254.169.254, an admin page on 10.x, a database on localhost). What is
guarded, at the first URL and at every redirect hop (redirects are followed here, not by the client):

- only ``http`` and ``https``;
- the host is resolved once, and every address it resolves to must be public: private, loopback,
  link-local, multicast, reserved and unspecified addresses are refused (IPv4, IPv6, and IPv4 inside
  IPv6: mapped, 6to4, NAT64), unless ``RAG_FETCH_ALLOW`` names the host, host:port, address or range;
- DNS rebinding (a name that resolves to a public address when checked and to 127.0.0.1 when
  connected): the connection is made to the checked addresses themselves, by a network backend that
  knows no others, so the HTTP client never resolves the name again. TLS still verifies the
  certificate against the host name.

What is not guarded: an allowed host name is trusted whatever it resolves to; a public host that
relays requests inward (an open proxy) is public by definition; the environment's proxy settings
are ignored (a proxy would connect in our place and make the check moot); name resolution itself has
no timeout of its own (the system resolver's applies); a kept-alive connection to a host is reused
for its next requests (it was made to a checked address).
"""
from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

from common.errors import InputError

USER_AGENT = "newsrag/0.1 (question answering over news articles; feed reader)"
MAX_BYTES = 5 * 1024 * 1024  # RAG_FETCH_MAX_BYTES
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is not waited for in full
DEADLINE_FACTOR = 6  # a whole response must arrive within this many timeouts (a server trickling bytes)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Page:
    """A fetched document (``status`` 200), or the server's word that it did not change (304, no body)."""

    url: str  # where it was found, after redirects
    status: int
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""

    @property
    def not_modified(self) -> bool:
        """True for a 304: the copy we hold is current."""
        return self.status == 304


def forbidden(ip: Address) -> str:
    """Why ``ip`` may not be fetched from ("private", "loopback", ...); "" for a public address."""
    ip = _embedded_v4(ip) or ip
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return "" if ip.is_global else "non-public"  # e.g. 100.64.0.0/10, shared by carriers' NAT


def _embedded_v4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where it leads."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None


class AllowList:
    """``RAG_FETCH_ALLOW``: host names, host:port pairs, IP addresses and CIDR ranges that may be fetched
    from although they are not public (a newsroom's own feed server on its network, tests on 127.0.0.1)."""

    def __init__(self, entries: Iterable[str] = ()):
        self.names: set[str] = set()
        self.host_ports: set[tuple[str, int]] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            if entry.strip():
                self._add(entry.strip())

    def _add(self, entry: str) -> None:
        try:
            self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            return
        except ValueError:
            pass
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)|([^:\[\]/]+)", entry)
        host = _normal_host((match.group(1) or match.group(3) or match.group(5)) if match else "")
        port = int(match.group(2) or match.group(4) or 0) if match else 0
        if not host or not re.fullmatch(r"[a-z0-9.-]+|[0-9a-f:.]+", host) or not 0 <= port <= 65535:
            raise InputError(f"RAG_FETCH_ALLOW entry {entry!r} is not a host name, host:port, IP address or CIDR "
                             "range; write e.g. feeds.internal, feeds.internal:8080, 10.0.0.5 or 10.0.0.0/8")
        if port:
            self.host_ports.add((host, port))
        else:
            self.names.add(host)

    def permits(self, host: str, port: int, ip: Address) -> bool:
        """True when an entry names the host (as written in the URL), its host:port, or the address."""
        if host in self.names or (host, port) in self.host_ports or (str(ip), port) in self.host_ports:
            return True
        candidates = [ip] + ([_embedded_v4(ip)] if _embedded_v4(ip) else [])
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


def _normal_host(host: str) -> str:
    """A host name as compared: lower case, IDNA (punycode), no trailing dot, IPv6 without brackets."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return ""


def system_resolve(host: str) -> list[str]:
    """The addresses the system resolver gives for ``host``."""
    return [info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


class Fetcher:
    """GETs over http(s) with timeouts, bounded retries with backoff (connection errors, 429, 5xx),
    conditional requests, a size cap, a minimum interval between two requests to one host, and
    redirects followed here, each hop checked as the first URL is (see the module's docstring)."""

    def __init__(self, allow: Iterable[str] | AllowList = (), interval: float = 1.0, max_bytes: int = MAX_BYTES,
                 timeout: float = 10.0, retries: int = 2, backoff: float = 0.5,
                 resolve: Callable[[str], list[str]] = system_resolve, user_agent: str = USER_AGENT):
        import httpx

        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        self.interval, self.max_bytes, self.timeout = interval, max_bytes, timeout
        self.retries, self.backoff, self.resolve = retries, backoff, resolve
        self._network = _PinnedNetwork()
        self._client = httpx.Client(transport=_transport(self._network), timeout=timeout, trust_env=False,
                                    follow_redirects=False, headers={"user-agent": user_agent})
        self._turns: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        """TCP connections attempted so far (each to a checked address)."""
        return self._network.connections

    def get(self, url: str, etag: str = "", last_modified: str = "", accept: str = "*/*") -> Page:
        """The document at ``url``; with ``etag``/``last_modified`` from an earlier fetch, a 304 ``Page``
        when it has not changed. InputError, naming the URL, for a refused address, an unsupported URL,
        too many redirects, a body over ``max_bytes``, an error status or a failed connection."""
        headers = {"accept": accept}
        if etag:
            headers["if-none-match"] = etag
        if last_modified:
            headers["if-modified-since"] = last_modified
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            self._check(current, url)
            status, answer, body, attempts = self._request(current, headers, url)
            if status in REDIRECTS and answer.get("location"):
                current = urljoin(current, answer["location"])
                continue
            if status in (200, 304):
                return Page(current, status, body, answer.get("etag", "") or (etag if status == 304 else ""),
                            answer.get("last-modified", "") or (last_modified if status == 304 else ""),
                            answer.get("content-type", ""))
            raise InputError(_status_error(url, current, status, attempts))
        raise InputError(f"{url}: more than {MAX_REDIRECTS} redirects; give the address they end at")

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, url: str, first: str) -> None:
        """Refuse ``url`` unless it is http(s) to a host whose every address is public or allowed; then
        pin those addresses as the only ones the connection may go to."""
        import httpx

        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise InputError(f"{_where(first, url)}: not a valid URL ({exc}); give e.g. "
                             "https://example.org/feed.xml") from None
        if parsed.scheme not in ("http", "https") or not parsed.raw_host:
            raise InputError(f"{_where(first, url)}: only http and https URLs with a host can be fetched; give "
                             "e.g. https://example.org/feed.xml")
        host = _normal_host(parsed.raw_host.decode("ascii"))
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = self._addresses(host, first, url)
        for ip in addresses:
            kind = forbidden(ip)
            if kind and not self.allow.permits(host, port, ip):
                what = f"{host} is" if _is_address(host) else f"{host} resolves to {ip},"
                article = "an" if kind[0] in "aeiou" else "a"
                raise InputError(f"{_where(first, url)}: {what} {article} {kind} address; feeds may only be fetched "
                                 f"from public addresses unless RAG_FETCH_ALLOW names it "
                                 f"(e.g. RAG_FETCH_ALLOW={host})")
        self._network.pin(host, port, addresses)

    def _addresses(self, host: str, first: str, url: str) -> list[Address]:
        """``host`` itself if it is an address, else every address it resolves to (resolved once)."""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            found = self.resolve(host)
        except (OSError, UnicodeError) as exc:
            raise InputError(f"{_where(first, url)}: cannot resolve the host {host!r} "
                             f"({getattr(exc, 'strerror', None) or exc}); check the address") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(a.split("%")[0]) for a in found))
        if not addresses:
            raise InputError(f"{_where(first, url)}: the host {host!r} has no address; check the address")
        return addresses

    def _request(self, url: str, headers: dict, first: str):
        """(status, headers, body, attempts) of a GET of ``url``, retried on failed connections, 429 and 5xx
        with doubling waits (or the server's Retry-After); the body is read only for a 200."""
        import httpx

        host = _normal_host(httpx.URL(url).raw_host.decode("ascii"))
        for attempt in range(1, self.retries + 2):
            self._wait_turn(host)
            try:
                with self._client.stream("GET", url, headers=headers) as response:
                    if response.status_code not in RETRY_STATUS or attempt > self.retries:
                        body = self._read(response, first) if response.status_code == 200 else b""
                        return response.status_code, response.headers, body, attempt
                    wait = _retry_after(response.headers.get("retry-after"))
            except httpx.TransportError as exc:
                if attempt > self.retries:
                    raise InputError(f"{_where(first, url)}: {_describe(exc)} (after {attempt} attempts); check "
                                     "the address, or try again later") from None
                wait = None
            except httpx.DecodingError as exc:
                raise InputError(f"{_where(first, url)}: the response could not be decoded ({exc})") from None
            time.sleep(wait if wait is not None else self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, response, url: str) -> bytes:
        """The body, streamed, refused as soon as it passes ``max_bytes`` (decoded bytes: a small gzip bomb
        is refused too) or takes too long to arrive."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise InputError(_too_large(url, self.max_bytes, f"it declares {int(declared):,} bytes"))
        body, deadline = bytearray(), time.monotonic() + DEADLINE_FACTOR * self.timeout
        for piece in response.iter_bytes():
            body += piece
            if len(body) > self.max_bytes:
                raise InputError(_too_large(url, self.max_bytes, "its body goes on past it"))
            if time.monotonic() > deadline:
                raise InputError(f"{url}: the response took more than {DEADLINE_FACTOR * self.timeout:.0f} s to "
                                 "arrive; try again later")
        return bytes(body)

    def _wait_turn(self, host: str) -> None:
        """Sleep until ``interval`` seconds have passed since the last request to ``host`` (a slot is
        reserved under the lock, so threads sharing the fetcher queue up instead of bunching)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._turns.get(host, float("-inf")) + self.interval)
            self._turns[host] = start
        if start > now:
            time.sleep(start - now)


class _PinnedNetwork:
    """httpcore's network backend, connecting a host only to the addresses the fetcher checked for it."""

    def __init__(self):
        import httpcore

        self._inner = httpcore.SyncBackend()
        self._pins: dict[tuple[str, int], list[str]] = {}
        self._lock = threading.Lock()
        self.connections = 0

    def pin(self, host: str, port: int, addresses: list[Address]) -> None:
        """The addresses ``host:port`` may be connected to from now on."""
        with self._lock:
            self._pins[(host, port)] = [str(a) for a in addresses]

    def connect_tcp(self, host: str, port: int, timeout=None, local_address=None, socket_options=None):
        """A connection to the first checked address of ``host`` that answers."""
        import httpcore

        with self._lock:
            addresses = self._pins.get((_normal_host(host), port))
        if not addresses:  # every URL is checked before its request: reaching this is a bug, refused anyway
            raise InputError(f"{host}:{port}: refusing to connect to an address that was not checked")
        error: Exception | None = None
        for address in addresses:
            with self._lock:
                self.connections += 1
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        """Never: only TCP to checked addresses."""
        raise InputError(f"{path}: Unix sockets are not fetched from")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(network: _PinnedNetwork):
    """httpx's transport over ``network``. httpx takes no network backend of its own, so its connection
    pool is replaced by httpcore's with ours (httpx 0.28, pinned in constraints.txt; tests/test_feeds.py
    checks that connections go through it)."""
    import httpcore
    import httpx

    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=network,
                                              max_connections=10, keepalive_expiry=5.0)
    return transport


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _where(first: str, url: str) -> str:
    return first if url == first else f"{first} (redirected to {url})"


def _retry_after(value: str | None) -> float | None:
    """Seconds a 429/503's Retry-After asks for (capped), None when absent or not a number of seconds."""
    if value and value.strip().isdigit():
        return min(float(value.strip()), MAX_RETRY_AFTER)
    return None


def _describe(exc: Exception) -> str:
    import httpx

    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    return f"{kind} ({exc or type(exc).__name__})"


def _too_large(url: str, limit: int, why: str) -> str:
    return (f"{url}: the response is larger than the limit of {limit:,} bytes (RAG_FETCH_MAX_BYTES; {why}); "
            "raise the limit if the document is really that large")


def _status_error(first: str, url: str, status: int, attempts: int) -> str:
    """What an error status means for the user."""
    if status in REDIRECTS:
        return f"{_where(first, url)}: the server answered {status} without a Location to go to"
    hint = {404: "the address may have moved; check it", 410: "the document was removed",
            401: "it is not public", 403: "it is not public, or the server refuses this client"}.get(
        status, "try again later" if status in RETRY_STATUS else "check the address")
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    return f"{_where(first, url)}: the server answered {status}{tries}; {hint}"
