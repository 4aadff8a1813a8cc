"""Bad input, refused the way a user needs it: `hpo sweep` exits 2 with one line naming the key (or file) and the
fix, no traceback, before Ray starts, and nothing recorded (no registry row, MLflow experiment or Optuna study).

Each case is `hpo sweep` on the default experiment with one thing wrong, run through the command's own entry
point. Services that are "unreachable" are real closed ports on 127.0.0.1.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers.bad_configs import CONFIG_VALUES, OVERRIDES, PREFLIGHT
from tests.helpers.servers import free_port

pytestmark = pytest.mark.integration
NAME = "bad_input"


def _closed_port() -> int:
    return free_port()  # closed once the socket is: nothing listens there


@pytest.fixture(scope="module")
def files(tmp_path_factory, sst2_dir) -> dict[str, Path]:
    """Data files that are wrong in one way each."""
    d = tmp_path_factory.mktemp("bad_data")
    rows = "text,label\n" + "".join(f"a fine film {i},{i % 2}\n" for i in range(20))
    made = {
        "not_csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" * 8,
        "empty": b"",
        "header_only": b"text,label\n",
        "one_class": ("text,label\n" + "".join(f"fine {i},1\n" for i in range(20))).encode(),
        "unseen_labels": ("text,label\n" + "".join(f"fine {i},{2 + i % 2}\n" for i in range(10))).encode(),
        "latin1": ("text,label\n" + "".join(f"caf\u00e9 {i},{i % 2}\n" for i in range(20))).encode("latin-1"),
        "good": rows.encode(),
    }
    paths = {}
    for name, content in made.items():
        paths[name] = d / f"{name}.csv"
        paths[name].write_bytes(content)
    return paths


def _cases(f: dict[str, Path]) -> list[tuple[str, list[str], str]]:
    """(case, overrides, the key the one line must name)."""
    ray_port, mlflow_port, pg_port, s3_port = (_closed_port() for _ in range(4))
    good = ["data=csv", f"data.train_path={f['good']}", f"data.validation_path={f['good']}"]
    return [
        *CONFIG_VALUES,
        *OVERRIDES,
        *PREFLIGHT,
        # model and data
        ("not a CSV", [*good, f"data.train_path={f['not_csv']}"], "data.train_path"),
        ("empty file", [*good, f"data.train_path={f['empty']}"], "data.train_path"),
        ("header only", [*good, f"data.train_path={f['header_only']}"], "data.train_path"),
        ("no label column", [*good, "data.label_column=sentiment"], "data.label_column"),
        ("no text column", [*good, "data.text_column=sentence"], "data.text_column"),
        ("a single class", [*good, f"data.train_path={f['one_class']}"], "data.train_path"),
        ("validation labels unseen", [*good, f"data.validation_path={f['unseen_labels']}"], "data.validation_path"),
        ("not UTF-8", [*good, f"data.train_path={f['latin1']}"], "data.train_path"),
        # services
        ("unreachable MLflow server", [f"tracking.uri=http://127.0.0.1:{mlflow_port}"], "tracking.uri"),
        ("unreachable registry", [f"registry.url=postgresql+psycopg://hpo:secret@127.0.0.1:{pg_port}/hpo"],
         "registry.url"),
        ("unreachable Ray", ["cluster=ray", f"cluster.address=127.0.0.1:{ray_port}"], "cluster.address"),
        ("unreachable bucket", [f"storage.checkpoints=s3://bucket/p?endpoint_override=127.0.0.1:{s3_port}"
                                "&scheme=http&access_key=a&secret_key=b&request_timeout=1&connect_timeout=1"],
         "storage.checkpoints"),
        ("unwritable storage root", ["storage.root=/proc/hpo-runs"], "storage.root"),
    ]


def _recorded(root: Path) -> list[str]:
    """What any store holds after a refused sweep (empty when nothing was recorded)."""
    found = []
    for db, query in (("registry.db", "select name from hpo_studies"), ("mlflow.db", "select name from experiments "
                                                                       "where name != 'Default'")):
        if (root / db).is_file():
            with sqlite3.connect(root / db) as conn:
                try:
                    found += [f"{db}: {row[0]}" for row in conn.execute(query)]
                except sqlite3.OperationalError:  # the table was never created
                    pass
    found += [str(p) for p in root.glob("*/optuna.db")]
    return found


CASES = [c[0] for c in _cases(defaultdict(Path))]  # the names (the files are made by the fixture)


def test_there_are_at_least_30_distinct_cases():
    assert len(set(CASES)) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_early_with_one_line_and_nothing_recorded(case, files, tmp_path, sst2_dir, monkeypatch,
                                                                       capfd):
    """`hpo sweep` as its console script runs it (``hpo.cli.main.main`` with the same argv), in this process: the
    imports are paid once for all cases (tests/test_cli.py runs three of them as real subprocesses too)."""
    from hpo.cli.main import main

    _, overrides, key = next(c for c in _cases(files) if c[0] == case)
    root = tmp_path / "runs"
    monkeypatch.setenv("HPO_DATA_DIR", str(sst2_dir))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("hpo.study.run.start_ray", lambda cluster: pytest.fail(f"{case}: Ray was started"))
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "experiment=sst2_minilm", f"storage.root={root}", f"study.name={NAME}", *overrides])
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert exit_.value.code == 2, f"{case}: exit {exit_.value.code}\n{err[-3000:]}"
    assert len(lines) == 1, f"{case}: {len(lines)} lines on stderr:\n{err[-3000:]}"
    assert lines[0].startswith("hpo: config error: ") and key in lines[0], f"{case}: {lines[0]}"
    assert "Traceback" not in out + err
    assert _recorded(root) == [], f"{case}: recorded {_recorded(root)}"
