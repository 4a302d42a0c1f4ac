"""Property-based tests of the whole API against its own OpenAPI document (schemathesis),
as an administrator: no input it can generate may cause a 5xx or break the contract."""

from __future__ import annotations

import tempfile
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityos.config import Settings
from cityos.server import create_app

from .conftest import ServedCity

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _operations() -> list[tuple[str, str]]:
    # the operations are known without data: read them from an empty city's document
    spec = create_app(Settings(home=tempfile.mkdtemp(prefix="cityos-spec-"))).openapi()
    return [
        (path, method.upper())
        for path, item in sorted(spec["paths"].items())
        for method in sorted(item)
    ]


OPERATIONS = _operations()


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_api_conforms_to_its_schema(served: ServedCity, path: str, method: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = schemathesis.openapi.from_asgi("/openapi.json", served.client.app)
    operation = schema[path][method]
    headers = served.auth("admin")

    @given(data=st.data())
    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(data: Any) -> None:
        case = data.draw(operation.as_strategy())
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
