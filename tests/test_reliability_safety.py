"""Safety: no code path unpickles a file (user-supplied or not), and the Prefect servers that
the tests and the documentation start listen on 127.0.0.1 only.

(test_reliability_faults.py checks the sockets of a running `mixnn clean`'s embedded server.)
"""

from __future__ import annotations

import ast
import pickle
import re
import tarfile
from pathlib import Path

import pytest

from mixnn_core.ingest import ingest
from tests.test_reliability_input import ExplodesWhenUnpickled, add_member, add_sample

PROJECT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("mixnn_core", "tasks", "flows", "bench")
UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# (module alias, function) -> the keyword argument and value every call must pass explicitly
LOAD_GUARDS = {("np", "load"): ("allow_pickle", False), ("numpy", "load"): ("allow_pickle", False),
               ("torch", "load"): ("weights_only", True)}
# The one reviewed exception: the multi-process launcher unpickles its own child processes'
# return values from a private temporary folder it created (mode 0700), never a user's file.
REVIEWED = {"distributed.py: import pickle"}


def source_files() -> list[Path]:
    return sorted(path for folder in SOURCE_FOLDERS for path in (PROJECT / folder).rglob("*.py"))


def unsafe_calls(path: Path) -> list[str]:
    """Unpickling imports and calls in one file, as "file:line: what"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] in UNPICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLING_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            if name in ("read_pickle", "to_pickle"):
                found.append(f"{where}: .{name}()")
            guard = LOAD_GUARDS.get((owner, name))
            if guard is not None:
                keyword, value = guard
                passed = {k.arg: k.value for k in node.keywords}
                if not (isinstance(passed.get(keyword), ast.Constant) and passed[keyword].value is value):
                    found.append(f"{where}: {owner}.{name}() without {keyword}={value}")
    return found


def test_no_code_path_unpickles_files():
    files = source_files()
    assert len(files) > 20 and any(path.name == "trainer.py" for path in files)
    problems = {re.sub(r":\d+:", ":", problem) for path in files for problem in unsafe_calls(path)}
    assert problems - REVIEWED == set()


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "unsafe.py"  # parsed only, never imported
    bad.write_text("import numpy as np, torch, joblib\nfrom pickle import loads\nimport pandas as pd\n"
            "np.load('x.npy')\nnp.load('x.npy', allow_pickle=True)\ntorch.load('x.pt')\n"
            "pd.read_pickle('x')\nnp.load('ok.npy', allow_pickle=False)\n"
            "torch.load('ok.pt', weights_only=True)\n")
    assert [problem.split(": ", 1)[1] for problem in unsafe_calls(bad)] == [
        "import joblib", "from pickle import ...", "np.load() without allow_pickle=False",
        "np.load() without allow_pickle=False", "torch.load() without weights_only=True", ".read_pickle()"]


def test_pickle_members_in_a_tar_shard_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(ExplodesWhenUnpickled(marker))
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "a.tar", "w") as tar:
        for i in range(2):
            add_sample(tar, f"{i:04d}", 10 * i, str(i).encode())
        for extension in ("pyd", "pickle", "pth"):  # what webdataset's decoders would unpickle
            add_member(tar, f"0000.{extension}", payload)
            add_member(tar, f"evil.{extension}", payload)
        add_member(tar, "evil.cls", b"1")
    summary = ingest(tmp_path / "shards", tmp_path / "out")
    assert (summary.n_ingested, summary.n_quarantined) == (2, 1)
    assert not marker.exists()


@pytest.mark.parametrize("path", ["README.md", "tests/test_deployment.py", "Makefile", "prefect.yaml", ".ci/run"])
def test_documented_and_tested_prefect_servers_bind_to_localhost(path):
    text = (PROJECT / path).read_text()
    assert "0.0.0.0" not in text
    command = r"\"server\", \"start\",[^\]]*" if path.endswith(".py") else r"prefect server start[^`\n]*"
    starts = re.findall(command, text)
    for start in starts:
        assert re.search(r"--host[ \"',]+127\.0\.0\.1", start), start
    if path in ("README.md", "tests/test_deployment.py"):
        assert starts, f"{path} starts a Prefect server"

