"""`snapshotd verify`, `keygen` and `sweep`: looking after the evidence kept, from a machine of the
deployment or offline: checking bundles against their signed manifests, making the key that signs
them, and deleting what has expired.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from snapshotd.cli.common import fail, open_db, settings_from_env


def verify(
    files: Annotated[list[Path], typer.Argument(help="Bundles downloaded from /bundle.")],
    key: Annotated[
        Path | None,
        typer.Option(
            help="The instance's public key: the JSON /.well-known/snapshotd-manifest-key "
            "answers, saved as it is, or its PEM."
        ),
    ] = None,
    tsa_ca: Annotated[
        Path | None,
        typer.Option(help="PEM bundle of the CA certificates the timestamps must chain to."),
    ] = None,
) -> None:
    """Check snapshot bundles offline: the manifest's signature, every artifact's SHA-256 and
    every trusted timestamp (against the manifest's SHA-256 and its TSA's certificate). Exits 1
    when any bundle does not verify."""
    from snapshotd.engines.timestamping import load_roots
    from snapshotd.services import manifests

    try:
        public = manifests.load_public(_key_pem(key.read_bytes())) if key else None
    except (OSError, ValueError) as error:
        raise fail(f"--key {key}: {error}") from None
    try:
        roots = load_roots(tsa_ca) if tsa_ca else None
    except (OSError, ValueError) as error:
        raise fail(f"--tsa-ca: {error}") from None
    failed = False
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            # One bundle that cannot be read fails; the others are still checked.
            typer.echo(f"{path}: FAILED")
            typer.echo(f"  cannot be read: {error.strerror}")
            failed = True
            continue
        verdict = manifests.verify_bundle(data, public, roots)
        typer.echo(f"{path}: {'OK' if verdict.ok else 'FAILED'}")
        for line in verdict.lines:
            typer.echo(f"  {line}")
        failed |= not verdict.ok
    if failed:
        raise typer.Exit(1)


def _key_pem(data: bytes) -> bytes:
    """The PEM in a --key file, which may be the whole JSON document the instance publishes."""
    if not data.lstrip().startswith(b"{"):
        return data
    try:
        return str(json.loads(data)["pem"]).encode()
    except (ValueError, KeyError, TypeError):
        return data  # not that document: loading it as PEM says what is wrong


def keygen(
    file: Annotated[Path, typer.Argument(help="Where to write the key (refused if it exists).")],
) -> None:
    """Create an Ed25519 manifest signing key (PEM, mode 0600) for SNAPSHOTD_MANIFEST_KEY_FILE,
    to copy to every machine of a deployment."""
    from snapshotd.services.manifests import create_key_file

    try:
        created = create_key_file(file)
    except OSError as error:
        raise fail(f"cannot write {file}: {error.strerror}") from None
    if not created:
        raise fail(f"{file} already exists; it was left as it is")
    typer.echo(f"wrote {file}", err=True)


def sweep() -> None:
    """Delete expired snapshots, share links and unreferenced blobs now, looking at every blob
    for orphans (workers do this every sweep_interval_seconds, one shard of the blobs at a
    time)."""
    from snapshotd.services.retention import sweep as run_sweep
    from snapshotd.store.blobs import make_blob_store

    settings = settings_from_env()
    store = make_blob_store(settings)
    report = run_sweep(settings, open_db(settings), store, every_shard=True)
    typer.echo(str(report))


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
    app.command("keygen")(keygen)
    app.command("sweep")(sweep)
