"""Small file helpers: content hashes, writes that never leave a half-written file behind, and JSON objects read
with one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from nnunet_unlearning.errors import UserInputError

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def target_mode(path: Path) -> int:
    """The permission bits ``path`` should get: those of the file it replaces, else what ``open`` would give a new
    file under the process's umask (mkstemp's temporary files are private, 0600)."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """Write ``content`` to a temporary file beside ``path`` and rename it into place, with the permissions of
    the file it replaces (or a new file's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.chmod(temporary, target_mode(path))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, content: object) -> None:
    """:func:`atomic_write_text` of ``content`` as JSON indented by 2, with a final newline."""
    atomic_write_text(path, json.dumps(content, indent=2) + "\n")


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; :class:`UserInputError` naming the file and ``what`` it should hold when it
    is missing, unreadable, not JSON or not an object."""
    if not Path(path).is_file():
        raise UserInputError(f"{path}: {what} not found")
    try:
        content = json.loads(Path(path).read_text())
    except OSError as error:
        raise UserInputError(f"{path}: cannot read the {what} ({error.strerror})") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise UserInputError(f"{path}: {what} is not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise UserInputError(f"{path}: not a {what} (expected a JSON object)")
    return content
