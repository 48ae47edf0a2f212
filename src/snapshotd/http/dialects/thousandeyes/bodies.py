"""ThousandEyes v7 test bodies: reading an `HttpServerTestRequest` / `PageLoadTestRequest` into
snapshotd's test fields, and writing tests, agents and results back in the types the official SDK
checks strictly (ids as strings, integers as integers, booleans as booleans, `interval` one of its
enum). The settings a probe acts on become snapshotd's `ProbeSettings` (its own names, mapped
here both ways); the others are kept and returned when they are of the right type. `password` is
kept but never returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from snapshotd.errors import BadRequest
from snapshotd.services import agents as agent_service
from snapshotd.services.records import Agent, ProbeRound, SyntheticTest
from snapshotd.services.synthetic import INTERVALS, ProbeSettings, TestFields
from snapshotd.services.test_windows import Frozen
from snapshotd.timestamps import iso_seconds

_BOOLEANS = (
    "alertsEnabled",
    "followRedirects",
    "verifyCertificate",
    "includeHeaders",
    "networkMeasurements",
    "bandwidthMeasurements",
    "mtuMeasurements",
    "bgpMeasurements",
    "usePublicBgp",
    "randomizedStartTime",
    "allowUnsafeLegacyRenegotiation",
    "overrideAgentProxy",
    "collectProxyNetworkData",
    "useNtlm",
    "distributedTracing",
    "disableScreenshot",
    "allowMicAndCamera",
    "allowGeolocation",
    "identifyAgentTrafficWithUserAgent",
)
_INTEGERS = {
    "httpTimeLimit": (5, 60),
    "httpTargetTime": (100, 5000),
    "httpVersion": (1, 2),
    "numPathTraces": (1, 10),
    "fixedPacketRate": (0, 100),
    "downloadLimit": (0, 2**31 - 1),
    "pageLoadTimeLimit": (5, 60),
    "pageLoadTargetTime": (1, 60),
}
_STRINGS = (
    "desiredStatusCode",
    "contentRegex",
    "userAgent",
    "postBody",
    "dnsOverride",
    "username",
    "password",
    "clientCertificate",
    "overrideProxyId",
    "emulatedDeviceId",
    "blockDomains",
    "browserLanguage",
    "chromeOptions",
    "chromePolicies",
)
_CHOICES = {
    "requestMethod": ("get", "post"),
    "protocol": ("tcp", "icmp", "udp"),
    "probeMode": ("auto", "sack", "syn"),
    "pathTraceMode": ("classic", "in-session"),
    "ipv6Policy": ("force-ipv4", "prefer-ipv6", "force-ipv6", "use-agent-policy"),
    "sslVersionId": ("0", "3", "4", "5", "6", "7"),
    "authType": ("none", "basic", "ntlm", "kerberos", "oauth"),
    "chromiumTrack": ("stable", "latest"),
    "pageLoadingStrategy": ("normal", "eager", "none"),
}
_SUBINTERVALS = (60, 120, 300, 600, 900, 1200, 1800, 3600)
_NEVER_RETURNED = ("password",)
# Wire name → ProbeSettings field, for the settings a round acts on.
_PROBE_FIELDS = {
    "pageLoadTimeLimit": "page_load_time_limit",
    "httpTimeLimit": "http_time_limit",
    "followRedirects": "follow_redirects",
    "desiredStatusCode": "desired_status_code",
    "verifyCertificate": "verify_certificate",
    "requestMethod": "request_method",
    "headers": "headers",
    "postBody": "post_body",
    "userAgent": "user_agent",
    "networkMeasurements": "network_measurements",
    "protocol": "protocol",
}
_WIRE_NAMES = {field: wire for wire, field in _PROBE_FIELDS.items()}
# Settings are returned in the order they are read here, whatever order they were stored in.
_ORDER = {
    name: position
    for position, name in enumerate(
        (*_BOOLEANS, *_INTEGERS, *_STRINGS, *_CHOICES, "headers", "httpInterval", "subinterval")
    )
}


def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", field=field)


def _whole(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(field, f"must be a whole number from {low} to {high}")
    return value


def test_fields(body: Mapping[str, Any], *, creating: bool) -> TestFields:
    """Validates a v7 test request body; unknown keys are ignored, as the SDK sends many."""
    fields = TestFields()
    for key, attribute in (("testName", "name"), ("url", "url"), ("description", "description")):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise _bad(key, "must be a string")
            setattr(fields, attribute, value.strip() if key == "url" else value)
    if body.get("interval") is not None:
        fields.interval = _whole(body["interval"], "interval", 0, 2**31 - 1)
        if fields.interval not in INTERVALS:
            raise _bad("interval", f"must be one of {', '.join(map(str, INTERVALS))}")
    if body.get("enabled") is not None:
        if not isinstance(body["enabled"], bool):
            raise _bad("enabled", "must be true or false")
        fields.enabled = body["enabled"]
    if body.get("agents") is not None:
        fields.agent_ids = _agent_ids(body["agents"])
    elif creating:
        raise _bad("agents", "is required: name at least one agent (GET /v7/agents)")
    config = _config(body)
    fields.probe = ProbeSettings(
        **{_PROBE_FIELDS[key]: value for key, value in config.items() if key in _PROBE_FIELDS}
    )
    fields.extra = {key: value for key, value in config.items() if key not in _PROBE_FIELDS}
    return fields


def _agent_ids(raw: Any) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise _bad("agents", "must be a list of {agentId}")
    ids = []
    for item in raw:
        agent_id = item.get("agentId") if isinstance(item, dict) else None
        if not isinstance(agent_id, str) or not (agent_id.isascii() and agent_id.isdigit()):
            raise _bad("agents", "each agent needs an agentId string")
        ids.append(int(agent_id))
    return ids


def _config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key in _BOOLEANS:
        if body.get(key) is not None:
            if not isinstance(body[key], bool):
                raise _bad(key, "must be true or false")
            config[key] = body[key]
    for key, (low, high) in _INTEGERS.items():
        if body.get(key) is not None:
            config[key] = _whole(body[key], key, low, high)
    for key in _STRINGS:
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise _bad(key, "must be a string")
            config[key] = body[key]
    for key, choices in _CHOICES.items():
        if body.get(key) is not None:
            if body[key] not in choices:
                raise _bad(key, f"must be one of {', '.join(choices)}")
            config[key] = body[key]
    if body.get("headers") is not None:
        headers = body["headers"]
        if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
            raise _bad("headers", "must be a list of `Name: value` strings")
        config["headers"] = headers
    for key, allowed in (("httpInterval", INTERVALS), ("subinterval", _SUBINTERVALS)):
        if body.get(key) is not None:
            if body[key] not in allowed or isinstance(body[key], bool):
                raise _bad(key, f"must be one of {', '.join(map(str, allowed))}")
            config[key] = body[key]
    desired = config.get("desiredStatusCode", "default")
    if desired != "default" and not (
        desired.isascii() and desired.isdigit() and 100 <= int(desired) <= 599
    ):
        raise _bad("desiredStatusCode", 'must be "default" or a status code such as "200"')
    return config


# -- responses ------------------------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return iso_seconds(moment)


def test_links(base: str, test: SyntheticTest) -> dict[str, Any]:
    return {
        "self": {"href": f"{base}/v7/tests/{test.type}/{test.id}"},
        "testResults": [{"href": f"{base}/v7/test-results/{test.id}/{test.type}"}],
    }


def simple_test(base: str, test: SyntheticTest) -> dict[str, Any]:
    return {
        "testId": str(test.id),
        "testName": test.name,
        "type": test.type,
        "interval": test.interval,
        "enabled": test.enabled,
        "alertsEnabled": False,
        "description": test.description,
        "createdBy": test.created_by,
        "createdDate": _when(test.created_at),
        "modifiedBy": test.modified_by,
        "modifiedDate": _when(test.modified_at),
        "savedEvent": test.saved_event,
        "liveShare": False,
        "_links": test_links(base, test),
    }


def _settings(test: SyntheticTest) -> dict[str, Any]:
    """A test's stored settings under their wire names."""
    named = [(_WIRE_NAMES.get(key, key), value) for key, value in (test.config or {}).items()]
    kept = [(key, value) for key, value in named if key not in _NEVER_RETURNED]
    return dict(sorted(kept, key=lambda item: _ORDER.get(item[0], len(_ORDER))))


def unexpanded_test(base: str, test: SyntheticTest) -> dict[str, Any]:
    return {**_settings(test), **simple_test(base, test), "url": test.url}


def agent_body(agent: Agent) -> dict[str, Any]:
    return {
        "agentId": str(agent.id),
        "agentName": agent.name,
        "agentType": "enterprise",
        "location": agent.location,
        "countryId": agent.country_id,
        "ipAddresses": list(agent.ip_addresses or []),
        "publicIpAddresses": [],
        "enabled": True,
        "hostname": agent.name,
        "agentState": "online" if agent_service.is_online(agent) else "offline",
        "lastSeen": _when(agent.last_seen_at),
        "createdDate": _when(agent.created_at),
    }


def full_test(base: str, test: SyntheticTest, known: Mapping[int, Agent]) -> dict[str, Any]:
    body = unexpanded_test(base, test)
    body["agents"] = [
        _test_agent(known[agent_id]) for agent_id in test.agent_ids or [] if agent_id in known
    ]
    return body


def _test_agent(agent: Agent) -> dict[str, Any]:
    return {
        "agentId": str(agent.id),
        "agentType": "enterprise",
        "location": agent.location,
        "countryId": agent.country_id,
        "ipAddresses": list(agent.ip_addresses or []),
    }


def result_agent(agent: Agent | None, agent_id: int) -> dict[str, Any]:
    if agent is None:
        return {"agentId": str(agent_id)}
    return {
        "agentId": str(agent.id),
        "agentName": agent.name,
        "location": agent.location,
        "countryId": agent.country_id,
    }


_HTTP_FIELDS = {
    "server_ip": "serverIp",
    "response_code": "responseCode",
    "num_redirects": "numRedirects",
    "redirect_time": "redirectTime",
    "dns_time": "dnsTime",
    "ssl_time": "sslTime",
    "connect_time": "connectTime",
    "wait_time": "waitTime",
    "receive_time": "receiveTime",
    "wire_size": "wireSize",
    "response_time": "responseTime",
    "throughput": "throughput",
    "total_time": "totalTime",
    "error_type": "errorType",
    "error_details": "errorDetails",
    "ssl_cipher": "sslCipher",
    "ssl_version": "sslVersion",
}
_PAGE_FIELDS = {
    "response_time": "responseTime",
    "total_size": "totalSize",
    "num_objects": "numObjects",
    "num_errors": "numErrors",
    "dom_load_time": "domLoadTime",
    "page_load_time": "pageLoadTime",
    "error_type": "errorType",
    "error_details": "errorDetails",
}


def result_body(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None
) -> dict[str, Any]:
    result = probe.result or {}
    names = _PAGE_FIELDS if test.type == "page-load" else _HTTP_FIELDS
    return {
        **round_head(test, probe, agent, result.get("date")),
        "_links": {"appLink": {"href": f"{base}/v7/test-results/{test.id}/{test.type}"}},
        **present_fields(result, names),
    }


def round_head(
    test: SyntheticTest, probe: ProbeRound, agent: Agent | None, date: str | None
) -> dict[str, Any]:
    """What every result row starts with: when the round ran, and on which agent. `date` is
    the one the round recorded, if any."""
    return {
        "date": date or _when(probe.created_at),
        "roundId": probe.round_id,
        "startTime": probe.round_id,
        "endTime": probe.round_id + test.interval,
        "agent": result_agent(agent, probe.agent_id),
    }


def present_fields(source: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The values of `source` that are set, under their wire names (`names` maps key to wire)."""
    return {wire: source[key] for key, wire in names.items() if source.get(key) is not None}


def snapshot_v7(base: str, frozen: Frozen, view_url: str, uid: str) -> dict[str, Any]:
    test = frozen.test
    assert test.start_round is not None and test.end_round is not None
    return {
        "id": frozen.share.id,
        "displayName": test.name,
        "testId": str(test.id),
        "sourceTestId": str(frozen.source.id),
        "uid": uid,
        "startRoundId": test.start_round,
        "endRoundId": test.end_round,
        "roundId": test.end_round,
        "shareDate": _when(frozen.share.created_at),
        "extraParams": "",
        "isPublic": frozen.share.public,
        "test": simple_test(base, test),
        "_links": {
            "self": {"href": f"{base}/v7/tests/{frozen.source.id}/snapshot"},
            "appLink": {"href": view_url},
        },
    }
