"""Where `caspian run` writes a report by default: reports/<slug of the scenario's name>.

The name comes from the file; `name: ../../escaped-report` must not climb out
of the working directory and `name: /etc` must not write into /etc. Only
`--report DIR` chooses another place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from emulator import cli
from emulator.report.writers import REPORTS_DIR, default_report_dir, report_slug

AWKWARD_NAMES = [
    "../../escaped-report", "/etc", "..", ".", "/", "./..", "a/../../b", "~root", "$HOME", "C:\\Windows",
    "name with spaces", "Москва", "\x1b[31mred\x1b[0m", "-rf", ".hidden", "x" * 64, "A" * 64 + "/..", "\0", "é",
]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_a_slug_is_one_safe_directory_name(name: str) -> None:
    slug = report_slug(name)
    assert re.fullmatch(r"[a-z0-9._-]+", slug), slug
    assert slug not in (".", "..") and not slug.startswith((".", "-")) and not slug.endswith((".", "-"))
    assert ".." not in slug
    path = default_report_dir(name)
    assert not path.is_absolute() and path.parts == (REPORTS_DIR, slug)
    # resolved against any working directory, it stays under reports/
    base = Path("/work/dir")
    assert os.path.normpath(base / path).startswith(str(base / REPORTS_DIR) + os.sep)


@pytest.mark.parametrize("name, slug", [
    ("aktau-sumgait", "aktau-sumgait"), ("../../escaped-report", "escaped-report"), ("/etc", "etc"),
    ("Corridor FRR cut", "corridor-frr-cut"), ("v1.2_final", "v1.2_final"), ("a..b", "a.b"),
])
def test_ordinary_names_keep_their_look(name: str, slug: str) -> None:
    assert report_slug(name) == slug


def test_names_with_nothing_left_still_differ() -> None:
    slugs = {report_slug(name) for name in ("..", ".", "/", "Москва", "東京")}
    assert len(slugs) == 5 and all(s.startswith("scenario-") for s in slugs)
    assert report_slug("..") == report_slug("..")  # and stay the same from run to run


class _Stop(Exception):
    """Ends cmd_run once it has chosen the report directory."""


def _report_dir_of(args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> Any:
    """The directory cmd_run would write to for a scenario named `name`."""
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(f"name: {name!r}\nnodes:\n  left: {{role: host}}\n")
    chosen: list[Path] = []

    def writable(directory: Path) -> None:
        chosen.append(directory)
        raise _Stop

    monkeypatch.setattr(cli, "root_required", lambda: None)
    monkeypatch.setattr(cli, "_writable_report_dir", writable)
    parsed = cli.build_parser().parse_args(["run", str(scenario_file), *args])
    with pytest.raises(_Stop):
        cli.cmd_run(parsed)
    return chosen[0]


def test_cmd_run_takes_the_slug_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _report_dir_of([], monkeypatch, tmp_path, "../../escaped-report") == Path("reports/escaped-report")
    assert _report_dir_of([], monkeypatch, tmp_path, "/etc") == Path("reports/etc")


def test_cmd_run_takes_report_dir_as_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _report_dir_of(["--report", "/tmp/x/../y"], monkeypatch, tmp_path, "/etc") == Path("/tmp/x/../y")


def test_an_unusable_report_dir_is_bad_input_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(cli.InputError, match="cannot make the report directory .* is not a directory"):
        cli._writable_report_dir(blocker / "report")


def test_a_report_dir_is_not_made_before_the_run(tmp_path: Path) -> None:
    cli._writable_report_dir(tmp_path / "new" / "report")
    assert not (tmp_path / "new").exists()
