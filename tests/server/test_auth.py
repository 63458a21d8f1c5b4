"""The Host allow-list and the same-origin rule, case by case (the live attacks are in tests/security)."""

from __future__ import annotations

import pytest

from greenlm.errors import ConfigError
from greenlm.server.auth import check_allowed_hosts, host_allowed, same_origin

LOOP = ("loopback",)


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("127.0.0.1:8787", LOOP, True),
        ("127.9.9.9", LOOP, True),
        ("[::1]:8787", LOOP, True),
        ("LOCALHOST:8787", LOOP, True),
        ("localhost.", LOOP, True),
        ("app.localhost:1", LOOP, True),
        ("::1", LOOP, False),  # an IPv6 Host must be bracketed
        ("localhost.evil.example", LOOP, False),
        ("127.0.0.1.nip.io", LOOP, False),
        ("evil.example:8787", LOOP, False),
        ("127.0.0.1:99999", LOOP, False),
        ("127.0.0.1:80x", LOOP, False),
        ("user@127.0.0.1", LOOP, False),
        ("", LOOP, False),
        ("greenlm.corp:443", ("loopback", "greenlm.corp"), True),
        ("a.b.corp", ("*.corp",), True),
        ("corp", ("*.corp",), False),
        ("corp", (".corp",), True),
        ("xcorp", (".corp",), False),
        ("anything.example", ("*",), True),
        ("10.0.0.5:8787", ("10.0.0.5",), True),
        ("[fd00::5]:8787", ("fd00::5",), True),
    ],
)
def test_host_allowed(host: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert host_allowed(host, check_allowed_hosts(allowed)) is ok


@pytest.mark.parametrize(
    ("source", "host", "ok"),
    [
        ("http://127.0.0.1:8787", "127.0.0.1:8787", True),
        ("http://127.0.0.1:8787/lifecycle?x=1", "127.0.0.1:8787", True),  # a Referer
        ("http://127.0.0.1:8788", "127.0.0.1:8787", False),
        ("http://localhost:8787", "127.0.0.1:8787", False),
        ("https://greenlm.corp", "greenlm.corp", True),  # TLS ended by a proxy: Host without port
        ("https://greenlm.corp", "greenlm.corp:443", True),
        ("http://greenlm.corp", "greenlm.corp:443", False),
        ("https://greenlm.corp.evil.example", "greenlm.corp", False),
        ("null", "127.0.0.1:8787", False),
        ("file:///tmp/x.html", "127.0.0.1:8787", False),
        ("http://[::1]:8787", "[::1]:8787", True),
        ("http://127.0.0.1:notaport", "127.0.0.1:8787", False),
    ],
)
def test_same_origin(source: str, host: str, ok: bool) -> None:
    assert same_origin(source, host) is ok


@pytest.mark.parametrize("bad", ["evil.example/path", "a b", "user@host", "ex*ample.com", "-bad-.com", "x:80"])
def test_bad_allowed_hosts_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="is not a host name"):
        check_allowed_hosts([bad])


def test_allowed_hosts_are_normalised() -> None:
    assert check_allowed_hosts([" Greenlm.Corp. ", "*", "[::1]", "", "greenlm.corp"]) == ("greenlm.corp", "*", "::1")
