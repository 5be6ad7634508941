"""Integration fixtures: a real local intake on 127.0.0.1 that checks the API key the tests use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forwarder.devintake import LocalIntake

from .helpers import API_KEY


@pytest.fixture
def intake() -> Iterator[LocalIntake]:
    with LocalIntake(api_key=API_KEY) as server:
        yield server
