"""Screenshots of the web console for the README, taken by snapshotd itself (`make docs-images`).

It starts `snapshotd serve` on a scratch data folder and a small local site to capture, fills the
server with a few snapshots (a location's terms page before and after an edit, a pricing page,
a share link), signs in to the console, and then asks the same server to capture its own console
pages with the session cookie, like any capture a user would ask for. The images are the
server's artifacts, downloaded with their SHA-256 checked.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from snapshotd.client import SnapshotClient

SNAPSHOTD = Path(sys.executable).with_name("snapshotd")
STYLE = (
    "body{font:17px/1.6 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;"
    "color:#1d2430}h1{font-size:2rem}table{border-collapse:collapse;width:100%}"
    "td,th{border:1px solid #ccd;padding:.5rem 1rem;text-align:left}.new{background:#fff3b0}"
)
TERMS = """<h1>Acme Cloud: Terms of Service</h1><p>Effective {date}.</p>
<h2>1. Your account</h2><p>You are responsible for keeping your credentials secret and for
everything done with them.</p><h2>2. Fees</h2><p>{fees}</p><h2>3. Data</h2><p>We keep your
data for as long as your account is open and delete it {deletion} after you close it.</p>"""
PAGES = {
    "/terms/v1": TERMS.format(
        date="1 March 2026", fees="Plans are billed monthly in advance.", deletion="90 days"
    ),
    "/terms/v2": TERMS.format(
        date="1 November 2026",
        fees='<span class="new">Plans are billed yearly in advance and renew automatically.</span>',
        deletion='<span class="new">30 days</span>',
    ),
    "/pricing": """<h1>Pricing</h1><table><tr><th>Plan</th><th>Seats</th><th>Per month</th></tr>
<tr><td>Starter</td><td>5</td><td>$19</td></tr><tr><td>Team</td><td>25</td><td>$79</td></tr>
<tr><td>Business</td><td>100</td><td>$249</td></tr></table>""",
}


class Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 — the name http.server calls
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        page = f"<!doctype html><title>Acme</title><style>{STYLE}</style>{body}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *_args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [str(SNAPSHOTD), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz").status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("snapshotd serve did not become ready")


def console_cookie(base: str, token: str) -> str:
    """Signs in to the console the way a browser does, and returns the session cookie."""
    with httpx.Client(base_url=base) as browser:
        form = browser.get("/console/sign-in")
        nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if nonce is None:
            raise SystemExit("the sign-in page has no form token")
        signed_in = browser.post(
            "/console/sign-in", data={"token": token, "csrf": nonce[1], "next": "/console"}
        )
        if signed_in.status_code != 303:
            raise SystemExit(f"sign-in failed: {signed_in.status_code}")
        return str(browser.cookies["snapshotd_console"])


def shoot(client: SnapshotClient, url: str, out: Path, **options: Any) -> str:
    snapshot = client.wait(client.create(url, evidence=False, **options), timeout=120)
    client.download(snapshot, "image", out)
    print(f"wrote {out}")
    return snapshot.id


def location_with_two_captures(
    base: str, headers: dict[str, str], client: SnapshotClient, site: str
) -> tuple[str, str, str]:
    """A Clickwrap location whose terms page changed between two captures."""
    with httpx.Client(base_url=base, headers=headers, timeout=120) as api:
        made = api.post(
            "/v1.1/locations",
            json={"name": "Terms of Service", "key": "terms", "platform": "desktop"}
            | {"capture_url": f"{site}/terms/v1", "frequency": "never"},
        ).raise_for_status()
        where = f"/v1.1/locations/{made.json()['id']}"
        api.post(where + "/publish").raise_for_status()
        captured = []
        for version in ("v1", "v2"):
            api.patch(where, json={"capture_url": f"{site}/terms/{version}"}).raise_for_status()
            done = api.post(where + "/snapshots/capture").raise_for_status()
            captured.append(client.wait(str(done.json()["data"]["id"])).id)
        return str(made.json()["id"]), captured[0], captured[1]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    site = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    site_url = f"http://127.0.0.1:{site.server_address[1]}"
    with tempfile.TemporaryDirectory(prefix="snapshotd-docs-") as scratch:
        env = {
            **os.environ,
            "SNAPSHOTD_DATA_DIR": scratch,
            "SNAPSHOTD_EGRESS_ALLOW": "127.0.0.1",
            "SNAPSHOTD_WORKER_CONCURRENCY": "2",
        }
        token = subprocess.run(
            [str(SNAPSHOTD), "token", "create", "--org", "acme", "--email", "ops@acme.test"]
            + ["--role", "admin"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        server, base = start_server(env)
        try:
            with SnapshotClient(base_url=base, token=token, timeout=120) as client:
                pricing = client.wait(client.create(f"{site_url}/pricing", evidence=False))
                location, before, after = location_with_two_captures(
                    base, {"Authorization": f"Bearer {token}"}, client, site_url
                )
                share = client.share(pricing.id)
                cookie = [{"name": "snapshotd_console", "value": console_cookie(base, token)}]
                cookie[0] |= {"domain": "127.0.0.1", "path": "/console"}
                # networkidle: the grid's thumbnails are made on their first request.
                console = {"cookies": cookie, "width": 1280, "height": 860}
                console |= {"wait_until": "networkidle"}
                grid = f"{base}/console?status=success"  # not this capture, still running
                shoot(client, grid, out / "console-snapshots.png", **console)
                shoot(
                    client,
                    f"{base}/console/snapshots/{after}",
                    out / "console-snapshot.png",
                    **console,
                )
                shoot(
                    client,
                    f"{base}/console/locations/{location}/compare?a={before}&b={after}",
                    out / "console-compare.png",
                    **console,
                )
                shoot(client, share.url, out / "share-phone.png", device="iPhone 13")
        finally:
            server.terminate()
            server.wait(timeout=30)
            site.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
