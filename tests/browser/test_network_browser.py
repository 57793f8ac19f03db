"""The served app stays on this machine: it listens on loopback only, and its pages request nothing from outside."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import assert_no_error, serve_app, stop_app, wait_for_app

LISTEN = "0A"  # the TCP state /proc/net/tcp gives a listening socket
PAGES = ("", "train", "explore", "predict")


def listening_addresses(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses with a socket listening on `port`, read from the kernel's tables (no traffic sent)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == LISTEN and int(port_hex, 16) == port:
                found.append(kernel_address(address))
    return found


def kernel_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in the machine's (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def test_the_app_listens_on_this_machine_only(tmp_path):
    (tmp_path / "runs").mkdir()
    served = serve_app(tmp_path / "runs", tmp_path / "data", address=None)  # as the README starts it
    try:
        addresses = listening_addresses(int(urlsplit(served.url).port))
    finally:
        stop_app(served)
    assert addresses, "found no listening socket for the app's port"
    assert all(address.is_loopback for address in addresses), addresses


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about") or parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:  # a host name other than localhost
        return False


@pytest.mark.fresh_page  # must see every request: a shared tab answers some from its cache
def test_no_page_requests_anything_from_outside_this_machine(page, app_url):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in PAGES:
        page.goto(f"{app_url}/{path}")
        wait_for_app(page)
        page.locator('[data-testid="stMainBlockContainer"]').first.wait_for()
        page.wait_for_timeout(1500)  # the favicon and late component assets
        assert_no_error(page)
    outside = sorted({url for url in requested if not is_local(url)})
    assert requested and not outside, outside
    icon = page.evaluate("() => document.querySelector(\"link[rel='shortcut icon']\")?.href || ''")
    assert icon.startswith("data:"), icon  # drawn in the page, not fetched
