"""A saved run as one zip file (metadata + safetensors weights) that people can download and keep.

Only regular files that live in the run's folder go in: a link (symbolic or hard), a device or a pipe put in
place of meta.json or the weights is refused, so a zip never carries another file of the server.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile
from pathlib import Path

from core.store import (MAX_META_BYTES, MAX_WEIGHTS_BYTES, META_FILE, RunError, RunInfo, RunStore, parse_meta,
                        write_new_file)

HEADER_LENGTH_BYTES = 8  # safetensors: a little-endian u64 header length, the JSON header, then the tensors' bytes
READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # NONBLOCK: a FIFO never hangs


def run_archive(info: RunInfo) -> bytes:
    """The zip of a run as it is on disk: meta.json and the weights it names, under the run's id."""
    if info.meta is None:
        raise RunError(f"Run {info.run_id} cannot be downloaded: {(info.error or 'its metadata is unreadable').rstrip('.')}.")
    folder = _open_folder(info)
    try:
        meta_bytes = _read_plain_file(folder, META_FILE, MAX_META_BYTES, info.run_id)
        weights_file = parse_meta(info.run_id, meta_bytes).get("weights_file")  # the meta zipped names the weights zipped
        if not weights_file:
            raise RunError(f"Run {info.run_id} has no saved weights yet (it ends its first epoch before it has any).")
        weights = _read_plain_file(folder, weights_file, MAX_WEIGHTS_BYTES, info.run_id)
    finally:
        os.close(folder)
    _check_weights_size(weights, info.run_id)
    return _zip(info.run_id, {META_FILE: meta_bytes, weights_file: weights})


def export_run(store: RunStore, run_id: str, output: Path) -> Path:
    """Write the zip of `run_id` to `output`, a new file (an existing one is never replaced); returns its path."""
    if output.exists() or output.is_symlink():
        raise RunError(f"{output} already exists: remove it or name another file with --output.")
    data = run_archive(store.info(run_id))  # built whole first: a refused run leaves no file behind
    write_new_file(output, data)
    return output


def _open_folder(info: RunInfo) -> int:
    """The run folder, opened without following a link: files are then opened relative to it, never elsewhere."""
    if info.path.is_symlink():  # O_NOFOLLOW would say "Not a directory", which it is not
        raise RunError(f"Run {info.run_id} cannot be downloaded: its folder is a link, and links are never followed "
                       f"into a download; download the run it links to instead.")
    try:
        return os.open(info.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        raise RunError(f"Run {info.run_id} cannot be downloaded: its folder cannot be opened "
                       f"({error.strerror or error}).") from None


def _read_plain_file(folder: int, name: str, limit: int, run_id: str) -> bytes:
    """The bytes of `name` in the folder: a regular file with one name, at most `limit` bytes; RunError otherwise."""
    refused = f"Run {run_id} cannot be downloaded: its {name} is not a plain file of its own folder"
    try:
        before = os.stat(name, dir_fd=folder, follow_symlinks=False)
        _check_plain(before, refused)  # checked before opening: a device or pipe is never even opened
        descriptor = os.open(name, READ_FLAGS, dir_fd=folder)  # O_NOFOLLOW: a link swapped in since is refused
    except FileNotFoundError:
        raise RunError(f"Run {run_id} cannot be downloaded: its {name} is missing (it may have just saved a newer "
                       "epoch; try again).") from None
    except OSError as error:
        raise RunError(f"{refused} ({error.strerror or error}).") from None
    with os.fdopen(descriptor, "rb") as stream:
        opened = os.fstat(stream.fileno())  # what was opened, whatever the name points to now
        _check_plain(opened, refused)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino) or opened.st_size > limit:
            raise RunError(f"{refused}, or it is too large.")
        data = stream.read(limit + 1)
    if len(data) != opened.st_size:  # grew or shrank while read: not the file that was checked
        raise RunError(f"Run {run_id} cannot be downloaded: its {name} changed while it was read; try again.")
    return data


def _check_plain(status: os.stat_result, refused: str) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise RunError(f"{refused} (it is a link, a device or a pipe).")
    if status.st_nlink != 1:  # a hard link shares its bytes with a file elsewhere
        raise RunError(f"{refused} (it is a hard link to a file elsewhere).")


def _check_weights_size(data: bytes, run_id: str) -> None:
    """Refuse weights whose size is not what their safetensors header says: not weights, or something appended."""
    if _safetensors_size(data) != len(data):
        raise RunError(f"Run {run_id} cannot be downloaded: its weights file is not the size its safetensors header "
                       "gives, so it is not (only) this run's weights.")


def _safetensors_size(data: bytes) -> int | None:
    """The size a safetensors file must have by its header (8 + header + end of the last tensor), or None."""
    if len(data) < HEADER_LENGTH_BYTES:
        return None
    (header_length,) = struct.unpack("<Q", data[:HEADER_LENGTH_BYTES])
    if header_length > len(data) - HEADER_LENGTH_BYTES:
        return None
    try:
        header = json.loads(data[HEADER_LENGTH_BYTES:HEADER_LENGTH_BYTES + header_length])
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (ValueError, RecursionError, TypeError, KeyError, IndexError, AttributeError):
        return None
    if not all(isinstance(end, int) and not isinstance(end, bool) and end >= 0 for end in ends):
        return None
    return HEADER_LENGTH_BYTES + header_length + max(ends, default=0)


def _zip(run_id: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"{run_id}/{name}", data)
    return buffer.getvalue()
