"""The API probe through a real egress guard against a real JSON API on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import httpx
import pytest

from snapshotd.engines.apiprobe import ApiResult, ApiStep, Assertion, json_path, run_api
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import EgressGuard
from tests.api_server import PASSWORD, api_app
from tests.servers import serving

# internal.acme.test resolves to a loopback address the allowlist does not cover.
POLICY = EgressPolicy(["127.0.0.1/32"], hosts={"internal.acme.test": "127.0.0.2"})


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serving(api_app()) as url:
        yield url


def run(
    steps: Sequence[ApiStep], client_timeout: float = 10, **options: object
) -> tuple[ApiResult, EgressGuard]:
    async def go() -> tuple[ApiResult, EgressGuard]:
        async with (
            EgressGuard(POLICY) as guard,
            httpx.AsyncClient(proxy=guard.url, timeout=client_timeout) as http,
        ):
            result = await run_api(steps, http=http, guard=guard, policy=POLICY, **options)  # type: ignore[arg-type]
            return result, guard

    return asyncio.run(go())


def login(api: str, *assertions: Assertion) -> ApiStep:
    return ApiStep(
        name="login",
        url=f"{api}/login",
        method="post",
        headers=(("Content-Type", "application/json"),),
        body='{"user": "ada", "password": "{{password}}"}',
        assertions=assertions,
        variables=(("token", "$.token"), ("user_id", "$.user.id")),
    )


def check(name: str, operator: str, value: str) -> Assertion:
    return Assertion(name=name, operator=operator, value=value)  # type: ignore[arg-type]


def test_variables_flow_from_one_step_to_the_next(api: str) -> None:
    result, guard = run(
        [
            login(
                api,
                check("status-code", "is", "200"),
                check("response-body", "is", "$.user.roles[1]=ops"),
                check("response-header", "is", "X-Session: fresh"),
            ),
            ApiStep(
                name="profile",
                url=f"{api}/profile",
                headers=(("Authorization", "Bearer {{token}}"),),
                assertions=(
                    check("status-code", "is", "200"),
                    check("response-body", "includes", "Lovelace"),
                    check("response-body", "matches", "$.id=^7$"),
                    check("response-body", "is", "$.plan=free"),
                ),
            ),
        ],
        variables={"password": PASSWORD},
    )
    login_step, profile = result.steps
    assert [a.has_failed for a in login_step.assertions] == [False, False, False]
    assert login_step.status_code == 200 and profile.status_code == 200
    assert [a.has_failed for a in profile.assertions] == [False, False, False, True]
    assert profile.assertions[3].detail == "response-body $.plan is 'free': got 'pro'"
    assert result.error_type == "Assertion" and result.completion == 50.0
    assert "step 2 (profile): assertion 4 failed" in (result.error_details or "")
    for step in result.steps:
        assert step.api_call_time is not None and step.step_time is not None
        assert (step.wait_time or 0) <= step.api_call_time <= step.step_time
    assert guard.denied == 0


def test_a_missing_variable_ends_the_round(api: str) -> None:
    wrong = ApiStep(
        name="login",
        url=f"{api}/login",
        method="post",
        body="{}",
        variables=(("token", "$.token"),),
    )
    never = ApiStep(name="profile", url=f"{api}/profile")
    result, _ = run([wrong, never])
    assert len(result.steps) == 1 and result.steps[0].status_code == 401
    assert result.error_type == "Variable" and "'token'" in (result.error_details or "")
    assert result.completion == 0.0


def test_a_step_to_a_denied_address_is_refused_by_the_guard(api: str) -> None:
    port = httpx.URL(api).port
    result, guard = run([ApiStep(name="inside", url=f"http://internal.acme.test:{port}/profile")])
    step = result.steps[0]
    assert step.error_type == "Egress" and step.status_code is None
    assert "127.0.0.2 is a loopback address" in (step.error_details or "")
    assert result.error_type == "Egress" and guard.denied == 1


def test_slow_steps_time_out(api: str) -> None:
    slow = ApiStep(name="slow", url=f"{api}/slow")
    whole, _ = run([slow, ApiStep(name="never", url=f"{api}/profile")], time_limit_s=0.5)
    assert [s.error_type for s in whole.steps] == ["Timeout"] and whole.completion == 0.0
    assert "within 0.5 s" in (whole.error_details or "")
    # A request timeout of the guarded client (the worker's is 10 s) is a timeout too.
    one, _ = run([slow.model_copy(update={"verify_certificate": True})], client_timeout=0.3)
    assert one.error_type == "Timeout" and "ReadTimeout" in (one.error_details or "")


def test_redirects_are_followed_through_the_guard(api: str) -> None:
    moved = ApiStep(
        name="moved", url=f"{api}/moved", assertions=(check("status-code", "is", "401"),)
    )
    followed, _ = run([moved])
    assert followed.steps[0].status_code == 401 and followed.completion == 100.0
    kept, _ = run([moved], follow_redirects=False)
    assert kept.steps[0].status_code == 302 and kept.error_type == "Assertion"


def test_json_paths() -> None:
    document = {"a": {"b": [1, {"c d": "x"}]}}
    assert json_path(document, "$.a.b[0]") == 1
    assert json_path(document, "$.a.b[1]['c d']") == "x"
    assert json_path(document, "$") == document
    with pytest.raises(LookupError):
        json_path(document, "$.a.z")
    with pytest.raises(ValueError):
        json_path(document, "a.b")
