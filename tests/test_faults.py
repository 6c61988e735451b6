"""Fault injection, as a hostile user would try it: kills at every step of a lake commit,
concurrent identical runs, a full disk, read-only folders, odd and long names, rich markup in
names, extreme values, SQL abuse, a poisoned checkpoint, a killed build.

Every case asserts the same three things: the exit code is honest, a failure is one line naming
the file or field, and the lake and the published file are either unchanged or complete and
correct (compared with an uninterrupted run made here, on this machine, with the same batch
size). The real command line runs in subprocesses so that SIGKILL really kills it.

The full disk is a real tmpfs mounted for the test (this needs root, as CI and the dev machines
run); where mounting is impossible the test injects ENOSPC into the writes instead and says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import torch

from base.scratch import owned_scratch
from extract.engine import DISSECTION_TABLES, ExtractConfig, Interrupted, run_extract
from tests.cli_helpers import cli_env
from tests.conftest import REPO, lce
from tests.probe_factory import make_probe, small_cnn
from tests.toy_lake import make_toy_lake
from warehouse.lake import Write, commit, read_table, unfinished_commits

pytestmark = pytest.mark.slow
MODEL = "probe_factory:small_cnn"
TESTS = Path(__file__).parent
# Run metadata differs between two runs of the same thing; everything else must not.
VOLATILE = {"run_id", "started_at", "seconds", "settings"}


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real `lce` in a fresh process (stdin closed, like CI)."""
    return subprocess.run(
        [sys.executable, "-m", "lce.cli", *[str(a) for a in args]],
        env=cli_env(env),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode not in (0, None), proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(lake: Path) -> dict[str, list[dict]]:
    """Every dissection table of the lake, rows sorted, run metadata left out."""
    out = {}
    for table in DISSECTION_TABLES:
        rows = read_table(lake, table).to_pylist()
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
        out[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out


def weights_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = type(small_cnn())()
    torch.save(model.state_dict(), path)
    return path


def extract_args(probe: Path, lake: Path, *extra: str | Path) -> list[str | Path]:
    return ["extract", MODEL, "--layer", "block1", "--layer", "block2", "--probe",
            f"broden:{probe}", "--lake", lake, "--name", "cnn", "--batch-size", "4",
            "--workers", "0", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=16).root


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, probe: Path) -> dict[str, Path]:
    """Solo, uninterrupted runs: weights A, weights B over A, and a q = 0.02 study."""
    root = tmp_path_factory.mktemp("studies")
    a, b = weights_file(root / "a.pt", 1), weights_file(root / "b.pt", 2)
    # in-process (the same code the subprocesses run, on the same machine and batch size)
    for name, weights, q in (("old", a, 0.005), ("new", b, 0.005), ("q02", b, 0.02)):
        run_extract(
            ExtractConfig(model=MODEL, layers=["block1", "block2"], probe=probe,
                          lake=root / name / "lake", name="cnn", weights=weights, batch_size=4,
                          workers=0, quantile=q, progress=False)
        )  # fmt: skip
    return {"root": root, "a": a, "b": b, **{n: root / n / "lake" for n in ("old", "new", "q02")}}


@pytest.fixture(scope="module")
def toy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("toyhome")
    make_toy_lake(home / "lake")
    assert lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb")[0] == 0
    return home / "lce.duckdb"


# ---------------------------------------------------------------------------- kills in a commit

STEPS = ["commit-staged", "commit-committed", "commit-applying", "commit-applied"]


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_commit_step_leaves_old_or_new_study(
    studies: dict[str, Path], probe: Path, tmp_path: Path, step: str
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(studies["old"], lake)
    proc = run_cli(
        *extract_args(probe, lake, "--weights", studies["b"]), env={"LCE_TEST_KILL_AT": step}
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    expected = snapshot(studies["old"] if step == "commit-staged" else studies["new"])
    assert snapshot(lake) == expected  # reading recovers first: old or new, never a mix
    assert unfinished_commits(lake) == []
    assert not list((lake / ".tmp").glob("commit-*"))
    if step != "commit-applying":
        return
    # and the warehouse built from a recovered lake holds the same thresholds as the lake
    db = tmp_path / "lce.duckdb"
    assert lce("build", "--lake", lake, "--db", db)[0] == 0
    with duckdb.connect(str(db), read_only=True) as conn:
        built = conn.execute(
            "select layer, unit, threshold from stg_unit_thresholds order by layer, unit"
        ).fetchall()
    lake_rows = sorted((r["layer"], r["unit"], r["threshold"]) for r in expected["unit_thresholds"])
    assert built == lake_rows


@pytest.mark.parametrize("step", ["commit-staged", "commit-applying"])
def test_kill_during_a_new_study_commit(
    studies: dict[str, Path], probe: Path, tmp_path: Path, step: str
) -> None:
    """--new-study drops the old study in the same commit that adds the new one."""
    lake = tmp_path / "lake"
    shutil.copytree(studies["old"], lake)
    args = extract_args(probe, lake, "--weights", studies["b"], "--quantile", "0.02", "--new-study")
    proc = run_cli(*args, env={"LCE_TEST_KILL_AT": step})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    expected = studies["old"] if step == "commit-staged" else studies["q02"]
    assert snapshot(lake) == snapshot(expected)


def test_a_commit_of_several_tables_is_all_or_nothing_in_process(tmp_path: Path) -> None:
    """The same guarantee for the reference loader's three tables: a failure while staging the
    last table leaves none of them."""
    lake = tmp_path / "lake"
    good = pa.table({"model": ["m"], "reason": ["r"]})
    bad = pa.table({"model": ["m"]})  # lacks a column: fails while staging
    with pytest.raises(Exception, match="reason"):
        commit(
            lake,
            [Write("model_exclusions", {"source": "a"}, good),
             Write("model_exclusions", {"source": "b"}, bad)],
        )  # fmt: skip
    assert not (lake / "model_exclusions").exists()
    assert not list((lake / ".tmp").glob("commit-*"))


def test_dbt_by_hand_refuses_a_lake_with_an_unfinished_commit(
    studies: dict[str, Path], probe: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(studies["old"], lake)
    run_cli(*extract_args(probe, lake, "--weights", studies["b"]),
            env={"LCE_TEST_KILL_AT": "commit-applying"})  # fmt: skip
    assert unfinished_commits(lake)
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run(
        [str(dbt), "build", "--project-dir", str(REPO / "dbt_project"), "--profiles-dir",
         str(REPO / "dbt_project"), "--target-path", str(tmp_path / "target"),
         "--log-path", str(tmp_path / "logs")],
        env={**os.environ, "LCE_LAKE": str(lake), "LCE_DB_PATH": str(tmp_path / "x.duckdb")},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "unfinished commit" in proc.stdout


# ---------------------------------------------------------------------------- concurrency


def test_two_identical_extracts_at_once(
    studies: dict[str, Path], probe: Path, tmp_path: Path
) -> None:
    """The second identical run refuses in one line instead of sharing the first one's cache;
    the first one's results equal a solo run's."""
    lake = tmp_path / "lake"
    args = [sys.executable, "-m", "lce.cli",
            *map(str, extract_args(probe, lake, "--weights", studies["b"]))]  # fmt: skip
    first = subprocess.Popen(
        args, env=cli_env({"LCE_TEST_PAUSE_AT": "extract-locked:12"}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list((lake / ".locks").glob("extract-*.lock")):
            assert time.monotonic() < deadline and first.poll() is None, "first run never locked"
            time.sleep(0.1)
        second = run_cli(*extract_args(probe, lake, "--weights", studies["b"]))
        one_line_error(second, "another lce extract", "same model and settings")
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert snapshot(lake) == snapshot(studies["new"])


def test_a_killed_extract_leaves_no_lock_in_its_loader_workers(
    studies: dict[str, Path], probe: Path, tmp_path: Path
) -> None:
    """A flock belongs to the open file, which forked DataLoader workers share: after a `kill -9`
    of the run its workers held the work folder's lock until they noticed (about 5 s), and an
    immediate --resume was refused. No worker may hold the lock's descriptor (checked in
    /proc/<worker>/fd while the run is paused after a checkpoint), so --resume right after the
    kill continues, to the solo run's tables."""
    lake = tmp_path / "lake"
    args = extract_args(probe, lake, "--weights", studies["b"], "--workers", "2",
                        "--checkpoint-every", "1")  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-m", "lce.cli", *map(str, args)],
        env=cli_env({"LCE_TEST_PAUSE_AT": "extract-checkpoint:600"}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not list(lake.glob(".tmp/extract-*/rank0/checkpoint.pt")) or not _children_of(
            run.pid
        ):
            assert time.monotonic() < deadline and run.poll() is None, "no checkpoint"
            time.sleep(0.1)
        lock = str(next((lake / ".locks").glob("extract-*.lock")).resolve())
        holders = []
        for worker in _children_of(run.pid):
            for fd in Path(f"/proc/{worker}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == lock:
                        holders.append(worker)
        assert not holders, f"loader worker(s) {holders} hold {lock}"
    finally:
        run.kill()
        run.wait()
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(lake) == snapshot(studies["new"])


def test_two_builds_of_one_file_at_once(tmp_path: Path) -> None:
    home = tmp_path
    make_toy_lake(home / "lake")
    args = ["build", "--lake", home / "lake", "--db", home / "lce.duckdb"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lce.cli", *map(str, args)],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        if code != 0:
            assert "another lce build is publishing" in err and len(err.strip().splitlines()) == 1
    with duckdb.connect(str(home / "lce.duckdb"), read_only=True) as conn:
        models = {m for (m,) in conn.execute("select model from dim_models").fetchall()}
    assert {"tA", "tB", "p1"} <= models
    assert not list(home.glob(".lce.duckdb.build-*"))


def _children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            if fields.get("PPid", "").strip() == str(pid):
                found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_build_takes_dbt_with_it(
    toy_db: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    home = tmp_path
    shutil.copytree(toy_db.parent / "lake", home / "lake")
    shutil.copy(toy_db, home / "lce.duckdb")
    before = (home / "lce.duckdb").read_bytes()
    tmp = {"TMPDIR": str(home / "tmp")}  # where dbt's target and logs go (lce-dbt-*)
    (home / "tmp").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lce.cli", "build", "--lake", str(home / "lake"),
         "--db", str(home / "lce.duckdb"), "--var", "n_components=2"],
        env=cli_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(home.glob(".lce.duckdb.build-*")):  # dbt has started writing
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.05)
    children = _children_of(proc.pid)
    assert children, "dbt runs as a child"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(c) for c in children), "dbt outlived lce build"
    assert (home / "lce.duckdb").read_bytes() == before  # the published file is unchanged
    left = list((home / "tmp").glob("lce-dbt-*"))
    if sig == signal.SIGTERM:
        assert proc.returncode == 1
        assert len(err.strip().splitlines()) == 1 and "SIGTERM" in err
        assert not list(home.glob(".lce.duckdb.build-*")) and not left
    else:
        assert left, "a SIGKILL ends no `with` block: dbt's folder stays"
    # the next build removes what a SIGKILL left (the work file and the lce-dbt-* folder of a
    # process that is gone), leaves a live process's folder (this one's), and publishes
    with owned_scratch("lce-dbt-", home / "tmp") as live:
        again = run_cli("build", "--lake", home / "lake", "--db", home / "lce.duckdb", env=tmp)
        assert again.returncode == 0, again.stderr
        assert live.is_dir()
    assert not list(home.glob(".lce.duckdb.build-*"))
    assert not list((home / "tmp").iterdir()), "a killed build's folder is still there"


# ---------------------------------------------------------------------------- full disk


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path | None]:
    """A real tmpfs of ``size`` at ``where``; None where this process may not mount."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave: int) -> None:
    """Fill a file system until ``leave`` bytes remain free."""
    free = shutil.disk_usage(folder).free
    with (folder / "filler").open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def test_full_disk_during_extraction(
    studies: dict[str, Path], probe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_disk(tmp_path / "disk", "64k") as disk:
        if disk is None:  # injected: no permission to mount a small file system here
            lake = tmp_path / "lake"
            from extract import cache

            def full(self: object, arrays: object) -> None:
                raise OSError(errno.ENOSPC, "No space left on device", str(lake / "x.bin"))

            monkeypatch.setattr(cache.SparseCache, "append_sparse", full)
            code, out = lce(*extract_args(probe, lake, "--weights", studies["b"]))
            assert code == 1 and "No space left on device" in out
        else:
            lake = disk / "lake"
            proc = run_cli(*extract_args(probe, lake, "--weights", studies["b"]))
            one_line_error(proc, "No space left on device", str(lake))
        for table in DISSECTION_TABLES:
            assert not (lake / table).exists()
        leftovers = list((lake / ".tmp").iterdir()) if (lake / ".tmp").exists() else []
        assert leftovers == [], "a failed run frees its cache"


def test_full_disk_during_benchmarks_add_and_build(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "64m") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (not root); the lake-level ENOSPC case is "
                        "covered by test_lake's injected write failure")  # fmt: skip
        make_toy_lake(disk / "lake")
        assert lce("build", "--lake", disk / "lake", "--db", disk / "lce.duckdb")[0] == 0
        before_db = (disk / "lce.duckdb").read_bytes()
        before_lake = snapshot(disk / "lake")
        csv = tmp_path / "b.csv"
        rows = "\n".join(f"tA,task{i},d,m,{i}.5,true" for i in range(2000))
        csv.write_text("model,task,dataset,metric,value,higher_is_better\n" + rows + "\n")
        fill(disk, leave=4096)
        proc = run_cli("benchmarks", "add", csv, "--lake", disk / "lake", "--source", "big")
        one_line_error(proc, "No space left on device")
        assert not (disk / "lake" / "task_benchmarks" / "source=big").exists()
        proc = run_cli("build", "--lake", disk / "lake", "--db", disk / "lce.duckdb")
        assert proc.returncode != 0
        assert len([x for x in proc.stderr.strip().splitlines() if x.strip()]) == 1, proc.stderr
        assert (disk / "lce.duckdb").read_bytes() == before_db
        assert not list(disk.glob(".lce.duckdb.build-*"))
        (disk / "filler").unlink()
        assert snapshot(disk / "lake") == before_lake


# ---------------------------------------------------------------------------- read-only folders


@contextlib.contextmanager
def read_only_copy(src: Path, where: Path) -> Iterator[Path | None]:
    """``src`` copied into a tmpfs that is then remounted read-only (root ignores chmod)."""
    with small_disk(where, "16m") as disk:
        if disk is None:
            yield None
            return
        shutil.copytree(src, disk / src.name)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        yield disk / src.name


def test_read_only_database_folder_and_lake(toy_db: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(toy_db.parent / "lake", home / "lake")
    shutil.copy(toy_db, home / "lce.duckdb")
    with read_only_copy(home, tmp_path / "ro") as ro:
        if ro is None:
            pytest.skip("cannot mount a read-only file system here (not root)")
        proc = run_cli("build", "--lake", home / "lake", "--db", ro / "lce.duckdb")
        one_line_error(proc, "not writable", str(ro))
        csv = tmp_path / "b.csv"
        csv.write_text("model,task,dataset,metric,value,higher_is_better\ntA,t,d,m,1,true\n")
        proc = run_cli("benchmarks", "add", csv, "--lake", ro / "lake")
        one_line_error(proc, "not writable", str(ro / "lake"))
        # reading a read-only lake still works: a build elsewhere from it
        proc = run_cli("build", "--lake", ro / "lake", "--db", tmp_path / "elsewhere.duckdb")
        assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------- names


def test_glob_characters_in_the_home_are_literal(toy_db: Path, tmp_path: Path) -> None:
    """A home named like a glob reads its own lake only, never a sibling that matches."""
    mine = tmp_path / "study[1]*"
    sibling = tmp_path / "study1-other"
    make_toy_lake(mine / "lake")
    write = {"model": ["intruder"], "reason": ["should never be read"]}
    commit(sibling / "lake", [Write("model_exclusions", {"source": "x"}, pa.table(write))])
    proc = run_cli("build", env={"LCE_HOME": str(mine)})
    assert proc.returncode == 0, proc.stderr
    with duckdb.connect(str(mine / "lce.duckdb"), read_only=True) as conn:
        models = {m for (m,) in conn.execute("select model from dim_models").fetchall()}
        excluded = conn.execute("select count(*) from stg_model_exclusions").fetchone()[0]
    # the same toy lake built from a plain home
    with duckdb.connect(str(toy_db), read_only=True) as conn:
        expected = {m for (m,) in conn.execute("select model from dim_models").fetchall()}
    assert models == expected and "intruder" not in models and excluded == 0


def test_url_characters_in_the_database_path_are_refused(tmp_path: Path) -> None:
    make_toy_lake(tmp_path / "lake")
    proc = run_cli("build", "--lake", tmp_path / "lake", "--db", tmp_path / "a?b#c" / "x.duckdb")
    one_line_error(proc, "must not contain '?' or '#'")
    assert not (tmp_path / "a?b#c").exists()


def test_a_300_character_name_is_refused_before_any_work(probe: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    proc = run_cli(*extract_args(probe, tmp_path / "lake"), "--name", "m" * 300)
    one_line_error(proc, "name", "too long")
    assert not (tmp_path / "lake" / ".tmp").exists() or not list(
        (tmp_path / "lake" / ".tmp").glob("extract-*")
    )
    assert time.perf_counter() - started < 60


def test_markup_and_separators_in_names_are_data(
    studies: dict[str, Path], probe: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    name = "[/oops] [bold]x=y*"
    proc = run_cli(*extract_args(probe, lake), "--name", name)
    assert proc.returncode == 0, proc.stderr
    assert name in proc.stdout
    csv = tmp_path / "b.csv"
    csv.write_text(
        "model,task,dataset,metric,value,higher_is_better\n"
        f'"{name}",t,d,m,1.5,true\n"[red]other",t,d,m,2.5,true\n'
    )
    proc = run_cli("benchmarks", "add", csv, "--lake", lake, "--source", "x=y [z]*")
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "lce.duckdb"
    proc = run_cli("build", "--lake", lake, "--db", db)
    assert proc.returncode == 0, proc.stderr
    assert "[red]other" in proc.stderr  # the warning names it as typed
    proc = run_cli("summary", "--db", db)
    assert proc.returncode == 0 and name in proc.stdout, proc.stderr
    proc = run_cli("sql", "select distinct source, model from fct_task_benchmarks order by 2",
                   "--db", db, "--csv")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [f"x=y [z]*,{name}", "x=y [z]*,[red]other"]


def test_a_long_benchmark_source_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "b.csv"
    csv.write_text("model,task,dataset,metric,value,higher_is_better\nm,t,d,m,1,true\n")
    code, out = lce("benchmarks", "add", csv, "--lake", tmp_path / "lake", "--source", "s" * 300)
    assert code == 1 and "--source" in out and "too long" in out
    assert not (tmp_path / "lake" / "task_benchmarks").exists()


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1e200"])
def test_extreme_benchmark_values_are_refused(tmp_path: Path, value: str) -> None:
    csv = tmp_path / "b.csv"
    csv.write_text(
        "model,task,dataset,metric,value,higher_is_better\n"
        f"a,t,d,m,{value},true\nb,t,d,m,1,true\nc,t,d,m,2,true\n"
    )
    code, out = lce("benchmarks", "add", csv, "--lake", tmp_path / "lake")
    assert code == 1, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "row 2" in lines[0] and "'value'" in lines[0], out
    assert not (tmp_path / "lake" / "task_benchmarks").exists()


# ---------------------------------------------------------------------------- checkpoints


def test_a_poisoned_checkpoint_is_discarded_and_the_run_is_right(
    studies: dict[str, Path], probe: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    cfg = ExtractConfig(model=MODEL, layers=["block1", "block2"], probe=probe, lake=lake,
                        name="cnn", weights=studies["b"], batch_size=4, progress=False,
                        checkpoint_every=1)  # fmt: skip
    with pytest.raises(Interrupted):
        run_extract(ExtractConfig(**{**cfg.__dict__, "stop_after_batches": 2}))
    (checkpoint,) = lake.glob(".tmp/extract-*/rank0/checkpoint.pt")
    for poison in (b"not a torch file", None):
        if poison is None:  # a valid torch file of the wrong shape
            torch.save({"pass": 1, "key": checkpoint.parent.parent.name}, checkpoint)
        else:
            checkpoint.write_bytes(poison)
        run_extract(ExtractConfig(**{**cfg.__dict__, "resume": True}))
        err = capfd.readouterr().err
        assert "checkpoint discarded, starting over" in err and str(checkpoint) in err
        assert snapshot(lake) == snapshot(studies["new"])
        # set up the next poison
        with pytest.raises(Interrupted):
            run_extract(ExtractConfig(**{**cfg.__dict__, "stop_after_batches": 2}))
        (checkpoint,) = lake.glob(".tmp/extract-*/rank0/checkpoint.pt")


def test_a_failed_run_removes_its_work_folder(probe: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broden"
    shutil.copytree(probe, broken)
    label = next(broken.glob("images/*object*.png"))
    label.write_bytes(b"not a png")
    proc = run_cli(*extract_args(broken, tmp_path / "lake"))
    one_line_error(proc, label.name)
    assert not list((tmp_path / "lake" / ".tmp").glob("extract-*"))


def test_an_interrupted_run_keeps_and_names_its_checkpoint(probe: Path, tmp_path: Path) -> None:
    """Ctrl+C (SIGINT) after the first checkpoint: the message says how to resume or clean."""
    lake = tmp_path / "lake"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lce.cli", *map(str, extract_args(probe, lake)),
         "--checkpoint-every", "1"],
        env=cli_env({"LCE_TEST_PAUSE_AT": "commit-staged:0"}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(lake.glob(".tmp/extract-*/rank0/checkpoint.pt")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    line = [x for x in err.strip().splitlines() if x.strip()][-1]
    assert "resume" in line and "checkpoint" in line
    assert list(lake.glob(".tmp/extract-*/rank0/checkpoint.pt"))
    for table in DISSECTION_TABLES:
        assert not (lake / table).exists()


# ---------------------------------------------------------------------------- SQL abuse

ABUSE = [
    ("copy dim_models to '{tmp}/out.csv'", "COPY"),
    ("export database '{tmp}/export'", "COPY/EXPORT"),
    ("attach '{tmp}/other.duckdb' as other", "ATTACH"),
    ("select * from read_csv('/etc/passwd')", "File and network access is disabled"),
    ("install httpfs", "INSTALL is refused"),
    ("insert into dim_models (model) values ('evil')", "INSERT is refused"),
    ("drop table fct_lce", "DROP is refused"),
    ("set enable_external_access = true", "SET statements are refused"),
    ("select 1; drop table fct_lce", "One statement at a time"),
    ("create type e as enum ('a'); select 1", "One statement at a time"),
]


@pytest.mark.parametrize(("statement", "message"), ABUSE)
def test_lce_sql_refuses_what_the_sql_page_refuses(
    toy_db: Path, tmp_path: Path, statement: str, message: str
) -> None:
    from lce import explore

    text = statement.format(tmp=tmp_path)
    with pytest.raises(explore.SqlRefused) as page:
        explore.run_sql(toy_db, text)
    code, out = lce("sql", text, "--db", toy_db)
    assert code == 1 and len(out.strip().splitlines()) == 1
    assert message in str(page.value) and message in out
    assert list(tmp_path.iterdir()) == []


def test_lce_sql_timeout_row_and_byte_caps(toy_db: Path) -> None:
    proc = run_cli("sql", "select count(*) from range(10000000000000)", "--db", toy_db,
                   "--timeout", "1")  # fmt: skip
    one_line_error(proc, "stopped after 1 s")
    proc = run_cli("sql", "select repeat('x', 1000000) as s from range(1000)", "--db", toy_db)
    one_line_error(proc, "larger than 50 MB")
    # A CSV is complete (every row, beyond the table's 1000-row cap) or the command fails.
    proc = run_cli("sql", "select i from range(5000) t(i)", "--db", toy_db, "--csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["i", *map(str, range(5000))]
    proc = run_cli("sql", "select repeat('x', 1000) as s from range(5000)", "--db", toy_db,
                   "--csv", "--max-mb", "1")  # fmt: skip
    one_line_error(proc, "larger than 1 MB")
    assert proc.stdout == ""
    proc = run_cli("sql", "select 1", "--db", toy_db, "--csv", "--max-rows", "10")
    one_line_error(proc, "--csv writes every row")


def test_a_single_pivot_is_one_statement(toy_db: Path) -> None:
    code, out = lce(
        "sql", "pivot (select component, model, value from fct_lce) on component using "
        "first(value) order by model", "--db", toy_db, "--csv",
    )  # fmt: skip
    assert code == 0, out
    with duckdb.connect(str(toy_db), read_only=True) as conn:
        n = conn.execute("select count(distinct model) from fct_lce").fetchone()[0]
    assert len(out.strip().splitlines()) == n + 1


# ---------------------------------------------------------------------------- what stays


def test_tmp_left_behind_is_only_a_named_resumable_checkpoint(
    studies: dict[str, Path], tmp_path: Path
) -> None:
    """After the solo runs of this module, their lakes hold no work folders or commits."""
    for name in ("old", "new", "q02"):
        tmp = studies[name] / ".tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == [], list(tmp.iterdir())
