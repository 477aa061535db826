"""Atomic writes keep the permissions a plain write would give: nnU-Net's files we rewrite stay readable."""

from __future__ import annotations

import os
import stat

from nnunet_unlearning.files import atomic_write_json, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "new.txt") == 0o644  # mkstemp alone gives 0600
    assert (tmp_path / "new.txt").read_text() == "x"


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "splits_final.json"
    path.write_text("[]")
    path.chmod(0o664)
    atomic_write_json(path, [{"train": [], "val": []}])
    assert _mode(path) == 0o664
    assert path.read_text().startswith("[")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
