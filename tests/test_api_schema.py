"""Schemathesis against the live OpenAPI schema: no server error, no response outside the schema.

Bounded (a fixed number of derandomized examples per operation and generation
mode) so that the suite stays fast and repeatable. Requests carry an admin key,
which every guarded operation admits, so that the generated data reaches the
handlers instead of stopping at the key check.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from api_support import LiveApi, encryption_key, live_api
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
EXAMPLES = 6


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("schema") / "data",
                                    max_upload_bytes=2_000_000) as running:
        running.as_("admin").post("/v1/banks", json={"name": "ads", "kind": "ads",
                                                     "policy": {"signals": ["hashes"]}})
        yield running


def test_no_server_error_and_no_schema_violation(live: LiveApi) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    headers = {"X-API-Key": live.keys["admin"]}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

            try:
                run()
            except Unsatisfiable:  # an operation without inputs has no invalid input to send
                assert mode is GenerationMode.NEGATIVE, operation.label
            except BaseException as exc:  # noqa: BLE001 - collect every failure, then report them all
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)


def test_the_enrolment_record_schema_is_published(live: LiveApi) -> None:
    spec = live.as_(None).get("/openapi.json").json()
    body = spec["paths"]["/v1/banks/{bank}/subjects"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = spec["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
    record = form["properties"]["record"]
    assert record["type"] == "string" and record["contentMediaType"] == "application/json"
    published = record["contentSchema"]
    assert published["additionalProperties"] is False and published["required"] == ["label"]
    assert {"label", "consent_by", "consent_date", "consent_expires", "date_of_birth", "minor",
            "personal", "name", "address", "room"} <= set(published["properties"])
