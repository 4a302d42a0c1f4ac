"""Fixtures for the ingest tests: a real Mosquitto broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cityos.testing.mosquitto import Broker, mosquitto_broker

from .builders import need_mosquitto


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """A private Mosquitto broker on 127.0.0.1 for this test module."""
    need_mosquitto()
    with mosquitto_broker() as b:
        yield b
