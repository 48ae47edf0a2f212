"""`snapshotd capture` for many pages, and `ls`, `get` and `share` against a real server: local
captures run real Chromium; remote ones go through uvicorn in a thread with a worker."""

from __future__ import annotations

import hashlib
import re
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from snapshotd.cli import app
from snapshotd.client import NotFoundError, SnapshotClient
from tests.pages import PageServer

PNG = b"\x89PNG\r\n\x1a\n"

Env = dict[str, str | None]


@pytest.fixture
def local(tmp_path: Path) -> Env:
    return {
        "SNAPSHOTD_DATA_DIR": str(tmp_path / "data"),
        "SNAPSHOTD_EGRESS_ALLOW": "127.0.0.1/32",
        "SNAPSHOTD_SERVER": None,
        "SNAPSHOTD_TOKEN": None,
    }


def invoke(env: Env, *args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def summary(result: Result) -> dict[str, list[str]]:
    """The summary's rows by URL: status, file, bytes or reason (and the snapshot id)."""
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    return {row[0]: row[1:] for row in rows}


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


# -- local captures ---------------------------------------------------------------------------


def test_several_urls_become_one_png_each_with_a_summary(
    local: Env, pages: PageServer, tmp_path: Path
) -> None:
    urls = [pages.url + "/", pages.url + "/box", pages.url + "/?n=2"]
    out = tmp_path / "shots"
    done = invoke(
        local, "capture", *urls, "--out-dir", str(out), "--width", "640", "--height", "480"
    )
    assert done.exit_code == 0, done.output
    rows = summary(done)
    assert list(rows) == urls
    port = pages.url.rsplit(":", 1)[1]
    names = [Path(rows[url][1]).name for url in urls]
    assert names == [
        f"127.0.0.1-{port}.png",
        f"127.0.0.1-{port}-box.png",
        f"127.0.0.1-{port}-n-2.png",
    ]
    for url in urls:
        status, file, written = rows[url]
        assert status == "ok"
        data = Path(file).read_bytes()
        assert data.startswith(PNG) and len(data) == int(written)
        assert size_of(Path(file)) == (640, 480)
    assert sorted(path.name for path in out.iterdir()) == sorted(names)
    assert "[3/3]" in done.stderr


def test_refused_urls_fail_with_the_reason_and_the_rest_are_kept(
    local: Env, pages: PageServer, canary: PageServer, tmp_path: Path
) -> None:
    good = pages.url + "/"
    loopback = canary.url + "/secret"
    unresolvable = "http://nowhere.invalid/"
    redirected = f"{pages.url}/redirect?to={canary.url}/hop"
    out = tmp_path / "out"
    done = invoke(
        local,
        "capture",
        good,
        loopback,
        unresolvable,
        redirected,
        "file:///etc/passwd",
        "-d",
        str(out),
    )
    assert done.exit_code == 1
    rows = summary(done)
    assert rows[good][0] == "ok" and Path(rows[good][1]).read_bytes().startswith(PNG)
    assert rows[loopback] == ["failed", "", "127.0.0.2 is a loopback address"]
    assert rows[unresolvable][0] == "failed"
    assert "could not resolve host 'nowhere.invalid'" in rows[unresolvable][2]
    assert rows[redirected][0] == "failed" and "egress guard refused" in rows[redirected][2]
    assert "use http or https" in rows["file:///etc/passwd"][2]
    assert [path.name for path in out.iterdir()] == [Path(rows[good][1]).name]
    assert not canary.hits


def test_from_a_plain_list_and_from_csv_with_per_row_options(
    local: Env, pages: PageServer, tmp_path: Path
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# the pages to keep\n\n{pages.url}/\n   \n  # not this\n{pages.url}/box\n")
    done = invoke(local, "capture", "--from", str(listing), "-d", str(tmp_path / "plain"), "-q")
    assert done.exit_code == 0, done.output
    assert [row[0] for row in summary(done).values()] == ["ok", "ok"]
    assert len(list((tmp_path / "plain").iterdir())) == 2
    assert done.stderr == ""

    # No .csv suffix: the header row says it is CSV.
    table = tmp_path / "pages.txt"
    table.write_text(
        "url,width,format,output\n"
        f"{pages.url}/,600,,narrow/home.png\n"
        f'"{pages.url}/box",,jpeg,\n'
        f"{pages.url}/?n=3,,,\n"
    )
    out = tmp_path / "csv"
    done = invoke(local, "capture", "--from", str(table), "-d", str(out), "--height", "500")
    assert done.exit_code == 0, done.output
    rows = summary(done)
    assert rows[f"{pages.url}/"][1] == str(out / "narrow" / "home.png")
    assert size_of(out / "narrow" / "home.png") == (600, 500)
    boxed = Path(rows[f"{pages.url}/box"][1])
    assert boxed.suffix == ".jpg"
    with Image.open(boxed) as image:
        assert image.format == "JPEG" and image.size == (1280, 500)
    assert Path(rows[f"{pages.url}/?n=3"][1]).read_bytes().startswith(PNG)


def test_usage_errors_are_one_line(local: Env, tmp_path: Path) -> None:
    nothing = invoke(local, "capture")
    assert nothing.exit_code == 2 and "nothing to capture" in nothing.stderr
    two = invoke(local, "capture", "https://a.example/", "https://b.example/", "-o", "x.png")
    assert two.exit_code == 2 and "--out-dir" in two.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("url,colour\nhttps://a.example/,red\n")
    unknown = invoke(local, "capture", "--from", str(bad))
    assert unknown.exit_code == 2 and "unknown CSV column 'colour'" in unknown.stderr
    missing = invoke(local, "capture", "--from", str(tmp_path / "absent.txt"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    escape = tmp_path / "escape.csv"
    escape.write_text("url,output\nhttps://a.example/,../outside.png\n")
    refused = invoke(local, "capture", "--from", str(escape), "-d", str(tmp_path / "o"))
    assert refused.exit_code == 1 and "must be a relative path" in refused.stdout
    assert not (tmp_path / "outside.png").exists()


def test_server_commands_need_a_server_and_a_token(local: Env) -> None:
    for args in (["ls"], ["get", "snp_x"], ["share", "snp_x"]):
        nowhere = invoke(local, *args)
        assert nowhere.exit_code == 2 and "SNAPSHOTD_SERVER" in nowhere.stderr
        anonymous = invoke(local, *args, "--server", "http://127.0.0.1:9")
        assert anonymous.exit_code == 2 and "SNAPSHOTD_TOKEN" in anonymous.stderr
    remote = invoke(local, "capture", "https://a.example/", "--server", "http://127.0.0.1:9")
    assert remote.exit_code == 2 and "SNAPSHOTD_TOKEN" in remote.stderr
    down = invoke(local, "ls", "--server", "http://127.0.0.1:9", "--token", "snap_x")
    assert down.exit_code == 1 and "cannot reach http://127.0.0.1:9" in down.stderr


# -- through a server -------------------------------------------------------------------------


def test_capture_ls_get_and_share_through_a_server(
    live_url: str,
    token: str,
    pages: PageServer,
    canary: PageServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote: Env = {"SNAPSHOTD_SERVER": live_url, "SNAPSHOTD_TOKEN": token}
    home, box, missing, refused = (
        f"{pages.url}/",
        f"{pages.url}/box",
        f"{pages.url}/?n=missing",
        f"{canary.url}/",
    )
    listing = tmp_path / "remote.csv"
    listing.write_text(
        f"url,selector,timeout_ms\n{home},,\n{box},#box,\n{missing},#missing,3000\n{refused},,\n"
    )
    out = tmp_path / "remote"
    done = invoke(remote, "capture", "--from", str(listing), "-d", str(out), "--width", "800")
    assert done.exit_code == 1, done.output
    rows = summary(done)
    assert rows[refused] == ["failed", "", "127.0.0.2 is a loopback address", ""]
    assert rows[missing][0] == "failed" and "#missing" in rows[missing][2]
    ids = {url: rows[url][3] for url in (home, box, missing)}
    assert all(snapshot_id.startswith("snp_") for snapshot_id in ids.values())
    for url, size in ((home, (800, 800)), (box, (120, 80))):
        status, file, written, _ = rows[url]
        assert status == "ok" and Path(file).read_bytes().startswith(PNG)
        assert Path(file).stat().st_size == int(written) and size_of(Path(file)) == size

    wrong = invoke({**remote, "SNAPSHOTD_TOKEN": "snap_wrong"}, "ls")
    assert wrong.exit_code == 1 and wrong.stderr.startswith("error: ")
    listed = invoke({}, "ls", "--server", live_url, "--token", token)
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert {line[0]: (line[1], line[2], line[4]) for line in lines} == {
        ids[home]: ("page", "success", home),
        ids[box]: ("page", "success", box),
        ids[missing]: ("page", "failed", missing),
    }
    assert datetime.fromisoformat(lines[0][3]).year == datetime.now(UTC).year
    assert len(invoke(remote, "ls", "--status", "success").stdout.splitlines()) == 2
    assert invoke(remote, "ls", "--limit", "1").stdout.split("\t")[0] == lines[0][0]
    assert invoke(remote, "ls", "--kind", "chart").stdout == ""
    drawn = invoke({**remote, "TTY_COMPATIBLE": "1", "COLUMNS": "200"}, "ls", "--status", "failed")
    plain = [line.split() for line in re.sub(r"\x1b\[[0-9;]*m", "", drawn.stdout).splitlines()]
    created = next(line[3] for line in lines if line[0] == ids[missing])
    header = ["id", "kind", "status", "created", "url"]
    assert plain == [header, [ids[missing], "page", "failed", *created.split(), missing]]

    with SnapshotClient(base_url=live_url, token=token) as client:
        snapshot = client.get(ids[home])
    image = next(each for each in snapshot.artifacts if each["role"] == "image")
    target = tmp_path / "fetched.png"
    fetched = invoke(remote, "get", ids[home], "-o", str(target))
    assert fetched.exit_code == 0, fetched.output
    assert hashlib.sha256(target.read_bytes()).hexdigest() == image["sha256"]
    assert target.read_bytes() == Path(rows[home][1]).read_bytes()
    monkeypatch.chdir(tmp_path)
    assert invoke(remote, "get", ids[box]).exit_code == 0
    assert size_of(tmp_path / f"{ids[box]}.png") == (120, 80)
    html = invoke(remote, "get", ids[home], "--artifact", "html", "-o", "-")
    assert html.exit_code == 0 and b"Hello from the test page" in html.stdout_bytes
    bundled = invoke(remote, "get", ids[home], "--artifact", "bundle")
    assert bundled.exit_code == 0, bundled.output
    assert bundled.stderr.startswith(f"wrote {ids[home]}.zip (")
    checked = invoke({}, "verify", f"{ids[home]}.zip")
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith(f"{ids[home]}.zip: OK")
    with SnapshotClient(base_url=live_url, token=token) as client:
        kept = tmp_path / "sdk-bundle.zip"
        client.bundle(ids[home], kept)
    with zipfile.ZipFile(kept) as bundle:
        assert {"manifest.json", "image.png", "html.html"} <= set(bundle.namelist())
    unknown = invoke(remote, "get", "snp_nope", "-o", str(tmp_path / "nope.png"))
    assert unknown.exit_code == 1 and "snp_nope" in unknown.stderr
    assert not (tmp_path / "nope.png").exists()

    shared = invoke(remote, "share", ids[home], "--expires-in", "600")
    assert shared.exit_code == 0, shared.output
    link = shared.stdout.strip()
    assert link.startswith(f"{live_url}/s/") and "public link" in shared.stderr
    assert httpx.get(link).status_code == 200
    opened = httpx.get(link + "/image")
    assert opened.status_code == 200 and opened.content == target.read_bytes()
    private = invoke(remote, "share", ids[box], "--private").stdout.strip()
    assert httpx.get(private).status_code == 404
    signed_in = httpx.get(private, headers={"Authorization": f"Bearer {token}"})
    assert signed_in.status_code == 200


def test_sdk_share_list_and_revoke(queued_url: str, token: str, pages: PageServer) -> None:
    with SnapshotClient(base_url=queued_url, token=token) as client:
        snapshot = client.create(pages.url + "/")
        before = time.time()
        link = client.share(snapshot, expires_in=120)
        assert link.public and link.state == "active" and link.snapshot_id == snapshot.id
        assert link.url == f"{queued_url}/s/{link.id}"
        assert link.expires_at is not None
        expires = datetime.fromisoformat(link.expires_at).timestamp()
        assert before + 110 < expires < time.time() + 130
        assert httpx.get(link.url).status_code == 200
        private = client.share(snapshot.id, public=False)
        assert not private.public
        client.revoke_share(link)
        assert httpx.get(link.url).status_code == 410
        states = {each.id: (each.state, each.public) for each in client.shares(snapshot)}
        assert states == {link.id: ("revoked", True), private.id: ("active", False)}
        with pytest.raises(NotFoundError):
            client.share("snp_nope")
        with pytest.raises(NotFoundError):
            client.revoke_share("nope")


def test_sdk_and_cli_carry_the_evidence_and_replay_switches(
    queued_url: str, token: str, pages: PageServer
) -> None:
    remote: Env = {"SNAPSHOTD_SERVER": queued_url, "SNAPSHOTD_TOKEN": token}
    with SnapshotClient(base_url=queued_url, token=token) as client:
        snapshot = client.create(pages.url + "/")
        plain = client.share(snapshot)
        assert not plain.evidence and not plain.replay
        both = client.share(snapshot, evidence=True, replay=True)
        assert both.evidence and both.replay and both.raw["evidence"] is True
        shared = invoke(remote, "share", snapshot.id, "--evidence")
        assert shared.exit_code == 0, shared.output
        assert "public link, with evidence, expires" in shared.stderr
        made = shared.stdout.strip().rsplit("/", 1)[1]
        replay = invoke(remote, "share", snapshot.id, "--replay", "--private")
        assert "private link, with replay, expires" in replay.stderr
        switches = {each.id: (each.evidence, each.replay) for each in client.shares(snapshot)}
    assert switches == {
        plain.id: (False, False),
        both.id: (True, True),
        made: (True, False),
        replay.stdout.strip().rsplit("/", 1)[1]: (False, True),
    }
    # Still queued, so there is no bundle yet; a link without evidence has none at all.
    assert httpx.get(f"{both.url}/bundle").status_code == 409
    assert httpx.get(f"{plain.url}/bundle").status_code == 404
