"""The deployment files in deploy/ and the guide in docs/deploy.md stay true to the code."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snapshotd.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = ["snapshotd-api.service", "snapshotd-worker.service"]
INSTALLED = "/opt/snapshotd/bin/snapshotd"
SETTING = re.compile(r"\bSNAPSHOTD_[A-Z0-9_]+")


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text())
    return parser


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "snapshotd.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


@pytest.mark.parametrize("name", UNITS)
def test_unit_files_verify(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; test_units_run_snapshotd checks the shape")
    # verify insists that ExecStart names an executable: point it at this environment's snapshotd.
    here = Path(sys.executable).parent / "snapshotd"
    unit = tmp_path / name
    unit.write_text((DEPLOY / name).read_text().replace(INSTALLED, str(here)))
    answer = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    complaints = [line for line in (answer.stdout + answer.stderr).splitlines() if name in line]
    assert answer.returncode == 0 and not complaints, answer.stdout + answer.stderr


def test_units_run_snapshotd() -> None:
    api, worker = (_unit(name)["Service"] for name in UNITS)
    assert api["ExecStart"].startswith(f"{INSTALLED} serve ") and "--workers 0" in api["ExecStart"]
    assert worker["ExecStart"] == f"{INSTALLED} worker"
    for service in (api, worker):
        assert service["User"] == "snapshotd"
        assert service["EnvironmentFile"] == "/etc/snapshotd/snapshotd.env"
        assert service["NoNewPrivileges"] == "yes"
    # SIGTERM to the worker alone, and time for the longest capture to finish before SIGKILL.
    assert worker["KillMode"] == "mixed"
    longest = Settings.model_fields["max_timeout_ms"].default / 1000
    assert int(worker["TimeoutStopSec"]) >= longest + 10
    # Chromium's JavaScript engine needs writable executable memory.
    assert "MemoryDenyWriteExecute" not in worker


def test_dockerfile_copies_what_exists_and_runs_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = re.findall(r"^([A-Z]+) (.*)$", text, re.MULTILINE)
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _destination = arguments.split()
            if any(source.startswith("--from=") for source in sources):
                continue  # copies out of an earlier build stage, not the repository
            for source in sources:
                assert (ROOT / source).exists(), f"the Dockerfile copies missing {source}"
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "[postgres,s3]" in text
    # The same Debian packages that `make run` installs on a developer's machine.
    deps = (ROOT / "scripts" / "system-deps.sh").read_text()
    wanted = re.search(r"^want=\((.*)\)$", deps, re.MULTILINE)
    assert wanted is not None
    for package in wanted.group(1).split():
        assert re.search(rf"\s{re.escape(package)}(\s|$)", text), f"{package} is not installed"


def test_every_setting_the_deploy_files_name_exists() -> None:
    known = {f"SNAPSHOTD_{name.upper()}" for name in Settings.model_fields}
    for path in (ROOT / "docs" / "deploy.md", DEPLOY / "snapshotd.env.example"):
        unknown = set(SETTING.findall(path.read_text())) - known
        assert not unknown, f"{path.name} names settings that do not exist: {sorted(unknown)}"


def test_env_example_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _env_example().items():
        assert value and " " not in value and '"' not in value, f"{name}: quote-free, no spaces"
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.blobs.startswith("s3://")
    assert settings.manifest_key_file


def test_the_guide_names_files_that_exist() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for named in sorted(set(re.findall(r"`(deploy/[\w.@-]+)`", guide))):
        assert (ROOT / named).exists(), f"docs/deploy.md names missing {named}"
    assert "--workers 0" in guide and "--processes" in guide
