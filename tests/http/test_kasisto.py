"""The Kasisto /create_snap surface, as curl and an <img src> use it."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image

from tests.pages import PageServer


def test_get_answers_png_bytes_of_the_requested_size(
    live_api: TestClient, token: str, pages: PageServer
) -> None:
    response = live_api.get(f"/create_snap?url={pages.url}/&width=1000&height=700&token={token}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (1000, 700)


def test_get_with_bearer_header_and_default_size(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    response = live_api.get("/create_snap", params={"url": pages.url + "/"}, headers=auth)
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (1280, 800)


def test_post_multipart_answers_file_url_that_works_without_a_token(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    response = live_api.post(
        "/create_snap?=,",
        headers=auth,
        files={
            "url": (None, pages.url + "/"),
            "width": (None, "640"),
            "height": (None, "480"),
            "localmode": (None, "false"),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["file_url", "status"] and body["status"] == "success"
    image = live_api.get(body["file_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (640, 480)
    tampered = body["file_url"].replace("sig=", "sig=x")
    assert live_api.get(tampered).status_code == 404


def test_errors_are_json_with_status_error(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    cases = [
        (live_api.get("/create_snap", params={"url": pages.url + "/"}), 401),
        (live_api.get("/create_snap", headers=auth), 400),
        (live_api.get("/create_snap", params={"url": "file:///etc/passwd"}, headers=auth), 400),
        (
            live_api.get("/create_snap", params={"url": "http://169.254.169.254/"}, headers=auth),
            400,
        ),
        (
            live_api.get("/create_snap", params={"url": pages.url, "width": "wide"}, headers=auth),
            400,
        ),
        (
            live_api.get("/create_snap", params={"url": pages.url, "width": "99999"}, headers=auth),
            400,
        ),
        (
            live_api.post(
                "/create_snap", headers={**auth, "content-type": "application/json"}, content=b"{"
            ),
            400,
        ),
        (live_api.post("/create_snap", data={"width": "100"}, headers=auth), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["status"] == "error" and body["message"]


def test_a_page_that_fails_to_capture_is_a_clean_error(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    response = live_api.get(
        "/create_snap",
        params={"url": f"{pages.url}/redirect?to=http://127.0.0.2:8080/"},
        headers=auth,
    )
    assert response.status_code == 502
    assert "egress guard refused" in response.json()["message"]


def test_a_deeply_nested_json_body_is_400(api: TestClient, auth: dict[str, str]) -> None:
    headers = {**auth, "content-type": "application/json"}
    for body in ('{"url": ' + "[" * 100_000, '{"url": "https://example.org", "width": NaN}'):
        response = api.post("/create_snap", headers=headers, content=body)
        assert response.status_code == 400, response.text
        answer = response.json()
        assert answer["status"] == "error" and "not valid JSON" in answer["message"]


def test_bad_input_found_by_fuzzing_is_a_400_in_kasisto_shape(
    api: TestClient, auth: dict[str, str]
) -> None:
    """A URL of nothing but a control character, and JSON nested deeper than the parser goes,
    once answered 500."""
    deep = b"[" * 100_000 + b"]" * 100_000
    json_body = {**auth, "content-type": "application/json"}
    for response in (
        api.post("/create_snap", headers=auth, json={"url": "\u0001"}),
        api.get("/create_snap", headers=auth, params={"url": "\u0001"}),
        api.post("/create_snap", headers=auth, data={"url": " \u0001\t"}),
        api.post("/create_snap", headers=json_body, content=deep),
        api.post("/create_snap", headers=json_body, content=b'{"url": ' + deep + b"}"),
    ):
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["status"] == "error" and body["message"], body
