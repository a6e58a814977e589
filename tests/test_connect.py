"""Connecting to Ray: an address nothing answers on is refused before Ray retries for minutes."""

from __future__ import annotations

import socket

import pytest

from raylanczos.distributed.session import check_reachable
from tests.conftest import free_port


def test_reachability_is_checked_for_host_and_port_addresses_only():
    """A port nobody listens on is refused; one that listens passes; the addresses Ray
    resolves itself (none, auto, local, a bare host) are left to Ray."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_reachable(f"127.0.0.1:{listening.getsockname()[1]}")
        check_reachable(f"ray://127.0.0.1:{listening.getsockname()[1]}")
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match=rf"cannot reach Ray at ray://{closed} \(Connection refused\)"):
        check_reachable(f"ray://{closed}")
    for address in (None, "auto", "local", "headnode"):
        check_reachable(address)
