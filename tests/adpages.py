"""A page with an ad slot and a tracking pixel from hosts that EasyList and EasyPrivacy name,
served on loopback under those names (the tests pin them to 127.0.0.1 in the egress guard)."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

# `||adnxs.com^` is in EasyList, `||scorecardresearch.com^$third-party` in EasyPrivacy.
AD_HOST = "ib.adnxs.com"
TRACKER_HOST = "sb.scorecardresearch.com"
TRACKER_SITE = "www.scorecardresearch.com"
# `||quantserve.com^$script,third-party` in EasyPrivacy: its scripts are blocked, its host is not.
SCRIPT_ONLY_HOST = "pixel.quantserve.com"
HOSTS = {name: "127.0.0.1" for name in (AD_HOST, TRACKER_HOST, TRACKER_SITE, SCRIPT_ONLY_HOST)}

AD_SLOT = (40, 120, 300, 250)  # left, top, width, height in CSS pixels
BACKGROUND = (255, 255, 255)


def _png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(out, "PNG")
    return out.getvalue()


def _html(body: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ads</title>"
        "<style>body{margin:0;background:#fff}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()


class AdServer:
    """Serves every name on one port and logs each request as (Host name, path)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host = (self.headers.get("host") or "").rpartition(":")[0]
                server.hits.append((host, self.path))
                kind, content = server.route(self.path)
                self.send_response(200 if content else 404)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def requested(self, host: str) -> bool:
        return any(name == host for name, _ in self.hits)

    def route(self, path: str) -> tuple[str, bytes]:
        left, top, width, height = AD_SLOT
        slot = f"position:absolute;left:{left}px;top:{top}px;width:{width}px;height:{height}px"
        pages = {
            "/news": _html(
                "<h1 style='margin:0;font-size:20px'>News</h1>"
                f"<iframe src='{self.url(AD_HOST, '/banner')}' style='{slot};border:0'></iframe>"
                f"<img alt='' src='{self.url(TRACKER_HOST, '/pixel.png')}' "
                "style='position:absolute;left:400px;top:120px;width:40px;height:40px'>"
                "<img alt='' src='/logo.png' "
                "style='position:absolute;left:400px;top:200px;width:40px;height:40px'>"
                # EasyList's generic element-hiding rule `##.ADBox` names this class.
                "<div class='ADBox' style='position:absolute;left:400px;top:300px;"
                "width:40px;height:40px;background:#f0f'></div>"
            ),
            "/own-site": _html(f"<img alt='' src='{self.url(TRACKER_HOST, '/pixel.png')}'>"),
            "/secure-ad": _html(
                f"<img alt='ad' src='https://{AD_HOST}:{self.port}/pixel.png' "
                "style='width:40px;height:40px'>"
            ),
            "/banner": _html("<div style='position:fixed;inset:0;background:#f00'></div>"),
        }
        if path in pages:
            return "text/html; charset=utf-8", pages[path]
        images = {"/pixel.png": (0, 160, 0), "/logo.png": (0, 0, 255)}
        if path in images:
            return "image/png", _png(images[path])
        return "text/plain", b""

    def __enter__(self) -> AdServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
