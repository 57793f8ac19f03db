"""A saved run as one zip file (metadata + safetensors weights) that people can download and keep."""

from __future__ import annotations

import io
import zipfile

from core.store import META_FILE, WEIGHTS_PATTERN, RunError, RunInfo


def run_archive(info: RunInfo) -> bytes:
    """The zip of a run's folder as it is on disk: meta.json and its weights file, under the run's id."""
    if info.meta is None:
        raise RunError(f"Run {info.run_id} cannot be downloaded: {(info.error or 'its metadata is unreadable').rstrip('.')}.")
    weights_file = info.get("weights_file")
    if not weights_file or not WEIGHTS_PATTERN.match(str(weights_file)):
        raise RunError(f"Run {info.run_id} has no saved weights yet (it ends its first epoch before it has any).")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in (META_FILE, str(weights_file)):
            archive.write(info.path / name, arcname=f"{info.run_id}/{name}")
    return buffer.getvalue()
