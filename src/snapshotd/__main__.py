from snapshotd.cli import app

app(prog_name="snapshotd")
