"""Documentation that a test keeps honest."""

from __future__ import annotations

from pathlib import Path

from snapshotd.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_with_its_default() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    for name, field in Settings.model_fields.items():
        variable = f"`SNAPSHOTD_{name.upper()}`"
        assert variable in doc, f"{variable} is missing from docs/settings.md"
        assert field.description, f"{name} has no description"
        line = next(line for line in doc.splitlines() if line.startswith(f"| {variable}"))
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, dict):
            shown = ",".join(f"{key}={value}" for key, value in default.items())
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        assert f"`{shown or '(empty)'}`" in line, (
            f"{variable}'s default is wrong in docs/settings.md"
        )


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
