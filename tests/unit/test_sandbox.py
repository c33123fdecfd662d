"""The rootless sandbox's pure parts: where a user's records go, and telling a user namespace apart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.errors import EnvironmentProblem
from emulator.network import sandbox


def test_the_initial_uid_map_is_the_identity_and_a_sandbox_map_is_not() -> None:
    assert sandbox.is_identity_map("         0          0 4294967295\n")
    assert not sandbox.is_identity_map("         0       1000          1\n")
    assert not sandbox.is_identity_map("")


def test_records_go_to_the_users_runtime_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = sandbox.user_dir()
    assert path == str(tmp_path / "caspian") and os.stat(path).st_mode & 0o777 == 0o700
    assert sandbox.Sandbox(path, 1, 2).runs_root == str(tmp_path / "caspian" / "runs")


def test_a_runtime_directory_that_is_not_absolute_falls_back_to_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    expected = f"/tmp/caspian-{os.getuid()}"
    existed = os.path.isdir(expected)
    try:
        assert sandbox.user_dir() == expected
    finally:
        if not existed:
            os.rmdir(expected)


def test_a_symlink_in_place_of_the_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # /tmp is shared: another user's link where our directory should be must not be followed
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "caspian").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="is not a directory of uid"):
        sandbox.user_dir()
