"""Pages the tests capture, served on loopback by a real HTTP server in a thread."""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def page(body: str, title: str = "snapshotd test page") -> bytes:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{margin:0;font-family:sans-serif;background:#fff}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()


# A 1x1 PNG, and what /archived's parts answer (each one's body as the page decodes it).
DOT_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a2d6a0d70000000049454e44ae426082"
)
ARCHIVED_STYLE = b"body { border-top: 4px solid #0a0; }\n" + b"/* padding */\n" * 40
ARCHIVED_DATA = b'{"items": [1, 2, 3], "note": "fetched by the page"}'
ARCHIVED_BIG = bytes(range(256)) * 400  # 100 KiB the size-limit tests leave out


def archived_page() -> bytes:
    return page(
        "<h1>archived</h1><link rel='stylesheet' href='/archive/style.css'>"
        "<img src='/redirect?to=/archive/dot.png'>"
        "<script>fetch('/archive/big.bin').then(r => r.arrayBuffer());"
        "fetch('/archive/data.json').then(r => r.json()).then(d => "
        "{document.title = 'archived ' + d.items.length;"
        " return fetch('/posted?from=archive', {method: 'POST', body: 'a=1&b=two',"
        " headers: {'content-type': 'application/x-www-form-urlencoded'}})})</script>",
        title="archived",
    )


def routes(
    query: dict[str, list[str]], canary: str
) -> dict[str, tuple[int, dict[str, str], bytes]]:
    html = {"content-type": "text/html; charset=utf-8"}
    target = query.get("to", [""])[0]
    return {
        "/": (200, html, page("<h1 style='color:#c00'>Hello from the test page</h1>")),
        "/box": (
            200,
            html,
            page(
                "<div style='height:300px'></div><div id='box' "
                "style='width:120px;height:80px;background:#00f'></div>"
            ),
        ),
        "/tall": (
            200,
            html,
            page("<div style='height:200000px;background:linear-gradient(#fff,#000)'></div>"),
        ),
        "/hang-forever": (200, html, page("<img src='/stall'><p>waiting</p>")),
        "/busy": (200, html, page("<p>busy</p><script>while (true) {}</script>")),
        "/alerts": (200, html, page("<p>alerts</p><script>while (true) { alert('hi'); }</script>")),
        "/redirect": (302, {"location": target}, b""),
        "/subresources": (
            200,
            html,
            page(
                f"<h1>allowed part</h1><img src='{canary}/img.png'>"
                f"<iframe src='{canary}/frame'></iframe>"
                f"<script src='{canary}/script.js'></script>"
                f"<script>fetch('{canary}/fetch').catch(() => {{}});</script>"
                f"<link rel='stylesheet' href='{canary}/style.css'>"
            ),
        ),
        "/hook": (200, {"content-type": "application/json"}, b"{}"),
        "/posted": (200, {"content-type": "application/json"}, b"{}"),
        "/archived": (200, html, archived_page()),
        "/archive/style.css": (
            200,
            {"content-type": "text/css", "content-encoding": "gzip"},
            gzip.compress(ARCHIVED_STYLE),
        ),
        "/archive/dot.png": (200, {"content-type": "image/png"}, DOT_PNG),
        "/archive/data.json": (200, {"content-type": "application/json"}, ARCHIVED_DATA),
        "/archive/big.bin": (200, {"content-type": "application/octet-stream"}, ARCHIVED_BIG),
        # Answers that have no body by definition: a POST answered 204 that the page never reads,
        # and a HEAD.
        "/bodiless": (
            200,
            html,
            page(
                "<h1>bodiless</h1><script>fetch('/no-content', {method: 'POST', body: 'x'});"
                "fetch('/archive/data.json', {method: 'HEAD'})</script>"
            ),
        ),
        "/no-content": (204, {}, b""),
        "/parts": (
            200,
            {**html, "set-cookie": "visit=1; Path=/; HttpOnly"},
            page(
                "<img src='/box'><link rel='stylesheet' href='/missing.css'>"
                "<script>fetch('/posted?from=page', {method: 'POST', body: 'four'})</script>"
            ),
        ),
        "/slow": (200, html, page("<h1>worth the wait</h1>")),
        "/shaping": (
            200,
            html,
            page(
                "<div id='banner' style='position:fixed;top:0;left:0;width:100%;height:100%;"
                "background:#f00'></div><style>@media (prefers-color-scheme: dark)"
                "{body{background:#000}}</style><script>setTimeout(() => {"
                "const late = document.createElement('p'); late.id = 'late';"
                "late.textContent = 'arrived'; document.body.append(late)}, 300)</script>"
            ),
        ),
    }


class PageServer:
    def __init__(
        self, host: str = "127.0.0.1", canary: str = "", tls: ssl.SSLContext | None = None
    ) -> None:
        """With `tls`, the server speaks https with that context's certificate."""
        self.hits: list[tuple[str, str, dict[str, str], bytes]] = []
        self.canary = canary
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                server.hits.append((self.command, parts.path, dict(self.headers.items()), body))
                if parts.path == "/stall":
                    time.sleep(120)
                    return
                if parts.path == "/slow":
                    time.sleep(float(parse_qs(parts.query).get("s", ["3"])[0]))
                table = routes(parse_qs(parts.query), server.canary)
                if parts.path == "/echo":
                    shown = "".join(f"<li>{k.lower()}: {v}</li>" for k, v in self.headers.items())
                    table["/echo"] = (200, {"content-type": "text/html"}, page(f"<ul>{shown}</ul>"))
                status, headers, content = table.get(parts.path, (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = _serve
            do_POST = _serve
            do_HEAD = _serve

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            # The handshake happens in the handler thread, so a connection that never sends one
            # (a browser's preconnect) cannot hold up the listener.
            self.httpd.socket = tls.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
