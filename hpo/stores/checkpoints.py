"""Where trial checkpoints live: a folder every node mounts, or an object store (S3, GCS, ...).

Ray Tune writes each trial's checkpoints under ``storage.checkpoints`` (Ray's ``storage_path``)
through a ``pyarrow`` filesystem; the driver reads them back to resume interrupted trials, to
upload each trial's best model to MLflow and to register the study's best. Paths here are what
Ray reports (``trial.path``, ``checkpoint.path``): paths on that filesystem, without the URI's
scheme, so a local folder and a bucket read the same way. Example::

    store = CheckpointStore("s3://bucket/hpo?endpoint_override=minio:9000&scheme=http")
    store.uri("sst2/tune")              # Ray's storage_path for that study
    with store.local_copy(path) as d:  # a checkpoint as a local folder (downloaded from a bucket)
        ...
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

from hpo.secrets import is_uri
from trainers import checkpoint as layout
from trainers.metrics import EVALUATION_FILE


class CheckpointStore:
    """The filesystem behind ``storage.checkpoints`` and the few reads the driver makes of it."""

    def __init__(self, location: str) -> None:
        """``location``: an absolute folder or a URI, as ``StudySpec.checkpoints`` holds it."""
        self.location = location
        self.fs, self.root = pafs.FileSystem.from_uri(location)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def uri(self, relative: str) -> str:
        """``location/relative`` as Ray's ``storage_path``, keeping a URI's options (``?endpoint_override=``)."""
        if not is_uri(self.location):
            return str(Path(self.location) / relative)
        parts = urlsplit(self.location)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + relative))

    def path(self, relative: str) -> str:
        """``relative`` as a path on this filesystem (as Ray reports trial and checkpoint paths)."""
        return f"{self.root.rstrip('/')}/{relative}"

    def display(self, path: str) -> str:
        """A path as a user finds it again: local as is, in a bucket as ``scheme://path``."""
        return path if self.is_local else f"{urlsplit(self.location).scheme}://{path}"

    def check_reachable(self) -> None:
        """Creates the root if needed; raises OSError when the store cannot be reached or written."""
        self.fs.create_dir(self.root, recursive=True)

    def count(self, folder: str, prefix: str) -> int:
        """How many entries directly in ``folder`` start with ``prefix`` (0 if the folder is missing)."""
        return len([i for i in self._list(folder) if Path(i.path).name.startswith(prefix)])

    def latest_complete(self, folders: list[str]) -> str | None:
        """The newest complete ``checkpoint_*`` (by its epoch) in any of ``folders``, or None."""
        best, best_epoch = None, -1
        for folder in dict.fromkeys(folders):
            for entry in self._list(folder):
                if entry.type != pafs.FileType.Directory or not Path(entry.path).name.startswith("checkpoint_"):
                    continue
                if layout.is_complete({Path(i.path).name for i in self._list(entry.path)}):
                    try:
                        summary = self.read_summary(entry.path)
                        epoch = summary["epoch"]
                    except (ValueError, KeyError, OSError):  # a copy cut short (a full disk): every file named,
                        continue                             # its summary empty or torn
                    if epoch > best_epoch and layout.is_whole(summary, self._sizes(entry.path)):
                        best, best_epoch = entry.path, epoch
        return best

    def latest_of_trial(self, trial_dir: str | None, recorded: str | None) -> str | None:
        """A trial's newest complete checkpoint, searched in its Ray folder and beside the one recorded."""
        folders = [trial_dir, recorded and recorded.rsplit("/", 1)[0]]
        return self.latest_complete([f for f in folders if f])

    def read_summary(self, checkpoint: str) -> dict:
        """The checkpoint's epoch and metrics (small JSON the trainer writes beside its state)."""
        with self.fs.open_input_stream(f"{checkpoint}/{layout.SUMMARY_FILE}") as f:
            return layout.parse_summary(f.read())

    def read_evaluation(self, checkpoint: str) -> dict | None:
        """The per-class evaluation of the checkpoint's best epoch (``best/evaluation.json``), if it has one."""
        path = f"{layout.best_model(checkpoint)}/{EVALUATION_FILE}"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            return json.loads(f.read())

    def is_dir(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.Directory

    @contextmanager
    def local_copy(self, path: str) -> Iterator[Path]:
        """``path`` as a local folder: itself on a local filesystem, else a temporary download."""
        if self.is_local:
            yield Path(path)
            return
        with tempfile.TemporaryDirectory(prefix="hpo-checkpoint-") as tmp:
            pafs.copy_files(path, tmp, source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())
            yield Path(tmp)

    @contextmanager
    def full_model(self, path: str) -> Iterator[Path]:
        """The model in ``path`` (a checkpoint or its ``best/``, compact) as a full Hugging Face folder: what
        leaves the study (MLflow, export) is whole; what stays in it refers to the base model."""
        with self.local_copy(path) as folder, tempfile.TemporaryDirectory(prefix="hpo-model-") as tmp:
            yield layout.full_model(folder, Path(tmp) / "model")

    def checkpoints_of(self, trial_dir: str) -> list[str]:
        """The ``checkpoint_*`` folders in a trial's Ray folder (whole or not)."""
        return [i.path for i in self._list(trial_dir)
                if i.type == pafs.FileType.Directory and Path(i.path).name.startswith("checkpoint_")]

    def size(self, folder: str) -> int:
        """Bytes under ``folder`` (0 if it is missing)."""
        selector = pafs.FileSelector(folder, allow_not_found=True, recursive=True)
        return sum(i.size or 0 for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File)

    def write_text(self, path: str, text: str) -> None:
        with self.fs.open_output_stream(path) as f:
            f.write(text.encode())

    def delete(self, path: str) -> None:
        """Removes a file or folder; nothing if it is already gone."""
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(path)

    def _sizes(self, folder: str) -> dict[str, int]:
        """Every file under ``folder`` by its path relative to it, with its size."""
        selector = pafs.FileSelector(folder, allow_not_found=True, recursive=True)
        return {i.path[len(folder.rstrip("/")) + 1:]: i.size for i in self.fs.get_file_info(selector)
                if i.type == pafs.FileType.File}

    def _list(self, folder: str) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
