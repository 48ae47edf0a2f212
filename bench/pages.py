"""The page every benchmark captures, and the loopback HTTP server that serves it."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = (
    "snapshot",
    "evidence",
    "browser",
    "capture",
    "render",
    "archive",
    "viewport",
    "pixel",
    "context",
    "queue",
    "worker",
    "lease",
    "artifact",
    "digest",
    "chromium",
    "layout",
    "paint",
    "compositor",
    "raster",
    "stylesheet",
    "paragraph",
    "heading",
)
COLORS = ("#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085")

STYLE = """
body { margin: 0; font: 15px/1.5 sans-serif; color: #222; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 32px; margin: 0 0 12px; } h2 { font-size: 22px; margin: 28px 0 8px; }
.row { display: flex; gap: 12px; margin: 12px 0; }
.box { flex: 1; height: 64px; border-radius: 8px; box-shadow: 0 2px 6px rgba(0,0,0,.25); }
.grad { background: linear-gradient(135deg, #fceabb, #f8b500); }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 16px; }
"""


def _sentence(seed: int, length: int) -> str:
    words = [WORDS[(seed * 7 + i * 13) % len(WORDS)] for i in range(length)]
    return " ".join(words).capitalize() + "."


def _svg(seed: int) -> str:
    shapes = []
    for i in range(6):
        color = COLORS[(seed + i) % len(COLORS)]
        shapes.append(
            f"<rect x='{10 + i * 50}' y='{10 + (i * 17) % 40}' width='40' height='40' "
            f"rx='6' fill='{color}'/><circle cx='{30 + i * 50}' cy='75' r='12' fill='{color}' "
            "opacity='.6'/>"
        )
    return f"<svg width='320' height='100' viewBox='0 0 320 100'>{''.join(shapes)}</svg>"


def _section(index: int) -> str:
    paragraphs = "".join(
        f"<p>{' '.join(_sentence(index * 31 + p * 5 + s, 12 + s) for s in range(4))}</p>"
        for p in range(3)
    )
    boxes = "".join(
        f"<div class='box' style='background:{COLORS[(index + b) % len(COLORS)]}'></div>"
        for b in range(4)
    )
    return (
        f"<section class='card'><h2>Section {index + 1}: {_sentence(index, 4)}</h2>"
        f"{paragraphs}<div class='row'>{boxes}<div class='box grad'></div></div>"
        f"{_svg(index)}</section>"
    )


def build_page(target_bytes: int = 50_000) -> bytes:
    """A self-contained page (no external resources) of about `target_bytes`."""
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>snapshotd bench page</title><style>{STYLE}</style></head><body><main>"
        "<h1>snapshotd benchmark page</h1>"
    )
    tail = "</main></body></html>"
    sections: list[str] = []
    while len(head) + sum(map(len, sections)) + len(tail) < target_bytes:
        sections.append(_section(len(sections)))
    return (head + "".join(sections) + tail).encode()


class PageServer:
    """Serves the bench page at `/`, whatever the query, on 127.0.0.1 (keep-alive, one thread per
    connection); `hits` counts the requests for each path and query."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.hits: Counter[str] = Counter()
        page, hits, lock = body, self.hits, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    hits[self.path] += 1
                content = page if self.path.split("?")[0] == "/" else b""
                self.send_response(200 if content else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("cache-control", "no-store")
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
