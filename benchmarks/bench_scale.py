"""Extraction at Broden scale without the cost of a real forward pass (not a test).

A generated probe set in the Broden layout (``scale_probe.py``: 63,305 images by default, 112 px
label maps, 28 px images, 48 concepts in 3 categories), made once under --probe-dir and reused,
is dissected by stand-in models (``scale_model.py``) whose layer ``relu`` gives ResNet-50
layer4-shaped (2048 x 7 x 7) or layer3-shaped (1024 x 14 x 14) activations with a calibrated
sparsity. Each configuration (layer x basis) runs ``run_extract`` in a fresh subprocess, so its
peak RSS is its own, while this process polls the work folder's files every --poll seconds.

    .venv/bin/python benchmarks/bench_scale.py [--n 63305] [--configs layer4-raw,layer3-upsampled]
        [--batch-size 16] [--probe-dir DIR] [--channels C] [--json FILE]

Per configuration it reports: peak RSS of the process (VmHWM) and the RSS once the model is
built and has run one batch (the model's own, with torch and the engine imported); the peak
bytes of the activation cache on disk (the engine's ``ExtractResult.cache_bytes`` when it has
one, else the largest size polled: every file of the work folder but checkpoint* and features*)
against the dense float32 size N x C x h x w x 4; the largest checkpoint (``checkpoint_bytes``,
else polled); images per second of pass 1 and of pass 3, the tally, and the seconds of pass 2,
the exact thresholds (``ExtractResult.timings`` when present, else measured around an older
engine's pass functions). --max-cache-gb and
--max-rss-gb stop a run that would fill the disk or the memory (the row then says so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import scale_probe  # noqa: E402

CONFIGS = {
    f"{layer}-{basis}": (f"scale_model:{layer}_model", basis)
    for layer in ("layer4", "layer3")
    for basis in ("raw", "upsampled")
}
COLUMNS = [
    "config", "N", "activations", "peak RSS MB", "model's own MB", "above own MB",
    "cache peak MB", "dense MB", "cache % dense", "checkpoint MB", "pass 1 img/s",
    "thresholds s", "tally img/s", "total s", "figures", "status",
]  # fmt: skip
MB = 1e6
POLLED = ("cache", "checkpoint", "features", "total", "rss")


def _status_kb(field: str, pid: int | str = "self") -> int:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM), 0 where there is none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _phase_clock(engine: Any) -> dict[str, tuple[float, float]]:
    """Start and end of each pass, timed around the engine's pass functions where they exist:
    the fallback while ExtractResult has no ``timings``."""
    marks: dict[str, tuple[float, float]] = {}
    # an older engine's functions: its "pass two" is the tally, pass 3 here
    for attr, key in (("_pass_one", "pass1"), ("_pass_two", "pass3")):
        original = getattr(engine, attr, None)
        if original is None:
            continue

        def timed(*args: Any, _original: Any = original, _key: str = key, **kw: Any) -> Any:
            tic = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                marks[_key] = (tic, time.perf_counter())

        setattr(engine, attr, timed)
    return marks


def child(spec: dict) -> None:
    """Runs inside the subprocess: the model's own RSS, then run_extract; one JSON line."""
    import gc
    import resource

    import torch

    from extract import engine
    from extract.engine import ExtractConfig, run_extract
    from extract.models import load_model

    size = spec["image_size"]
    loaded = load_model(spec["model"], None)
    with torch.no_grad():
        grid = loaded.module(torch.zeros(spec["batch_size"], 3, size, size))
    shape = list(grid.shape[1:])
    del loaded, grid
    gc.collect()
    own_kb = _status_kb("VmRSS")
    marks = _phase_clock(engine)
    tic = time.perf_counter()
    result = run_extract(
        ExtractConfig(
            model=spec["model"],
            layers=["relu"],
            probe=Path(spec["probe"]),
            lake=Path(spec["lake"]),
            name="standin",
            basis=spec["basis"],
            batch_size=spec["batch_size"],
            device=spec["device"],
            workers=spec["workers"],
            features=spec["features"],
            quantile=spec["quantile"],
            progress=False,
        )  # fmt: skip
    )
    seconds = time.perf_counter() - tic
    peak_kb = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings = getattr(result, "timings", None)
    source = "engine"
    if not timings and {"pass1", "pass3"} <= set(marks):
        (s1, e1), (s3, e3) = marks["pass1"], marks["pass3"]
        timings, source = {"pass1": e1 - s1, "pass2": s3 - e1, "pass3": e3 - s3}, "clocked"
    out = {
        "shape": shape,
        "n_images": result.n_images,
        "seconds": seconds,
        "own_bytes": own_kb * 1024,
        "peak_bytes": peak_kb * 1024,
        "timings": timings or {},
        "timings_source": source if timings else "none",
        "cache_bytes": getattr(result, "cache_bytes", None),
        "checkpoint_bytes": getattr(result, "checkpoint_bytes", None),
    }
    print(json.dumps(out))


class Poller:
    """Peak sizes of the work folder's files (lake/.tmp/extract-*/rank*/*) and of the child's
    resident memory, sampled from outside."""

    def __init__(self, lake: Path, pid: int) -> None:
        self.lake, self.pid = lake, pid
        self.cache = self.checkpoint = self.features = self.total = self.rss = 0

    def sample(self) -> None:
        cache = checkpoint = features = 0
        for path in self.lake.glob(".tmp/extract-*/rank*/*"):
            try:
                size = path.stat().st_size
            except OSError:
                continue  # removed between the listing and the stat
            if path.name.startswith("checkpoint"):
                checkpoint = max(checkpoint, size)
            elif path.name.startswith("features"):
                features += size
            else:
                cache += size
        self.cache = max(self.cache, cache)
        self.checkpoint = max(self.checkpoint, checkpoint)
        self.features = max(self.features, features)
        self.total = max(self.total, cache + checkpoint + features)
        self.rss = max(self.rss, _status_kb("VmRSS", self.pid) * 1024)


def measure(name: str, probe: Path, args: argparse.Namespace) -> dict:
    """One configuration in a fresh subprocess, polled until it ends (or a guard stops it)."""
    model, basis = CONFIGS[name]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lake = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    spec = {"model": model, "basis": basis, "probe": str(probe), "lake": str(lake),
            "batch_size": args.batch_size, "device": args.device, "workers": args.workers,
            "features": not args.no_features, "quantile": args.quantile,
            "image_size": args.image_size}  # fmt: skip
    env = dict(os.environ, LCE_BENCH_IMAGE_SIZE=str(args.image_size))
    if args.channels:
        env["LCE_BENCH_CHANNELS"] = str(args.channels)
    log = lake.parent / f"{lake.name}.log"
    tic = time.perf_counter()
    with log.open("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)], stdout=out,
            stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        poller, status = Poller(lake, proc.pid), "ok"
        while proc.poll() is None:
            poller.sample()
            if poller.total > args.max_cache_gb * 1e9:
                status = f"stopped: work folder over {args.max_cache_gb:g} GB"
            elif poller.rss > args.max_rss_gb * 1e9:
                status = f"stopped: RSS over {args.max_rss_gb:g} GB"
            if status != "ok":
                proc.kill()
                proc.wait()
                break
            time.sleep(args.poll)
        out.seek(0)
        text = out.read()
    wall = time.perf_counter() - tic
    shutil.rmtree(lake, ignore_errors=True)
    row: dict[str, Any] = {"config": name, "n": args.n, "status": status, "wall": wall,
                           "polled": {k: getattr(poller, k) for k in POLLED}}  # fmt: skip
    lines = [x for x in text.splitlines() if x.startswith("{")]
    if status == "ok" and (proc.returncode != 0 or not lines):
        tail = text.strip().splitlines()[-1:] or ["no output"]
        row["status"] = f"failed (exit {proc.returncode}): {tail[0][:200]}"
    elif status == "ok":
        row.update(json.loads(lines[-1]))
        log.unlink()
    return row


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table_row(r: dict) -> list[str]:
    """One markdown row's cells (the order of COLUMNS)."""
    polled = r["polled"]
    if "shape" not in r:
        return [r["config"], str(r["n"])] + ["-"] * (len(COLUMNS) - 4) + ["-", r["status"]]
    c, h, w = r["shape"]
    dense = r["n"] * c * h * w * 4
    cache = r["cache_bytes"] if r["cache_bytes"] is not None else polled["cache"]
    ckpt = r["checkpoint_bytes"] if r["checkpoint_bytes"] is not None else polled["checkpoint"]
    t = r["timings"]
    figures = "cache: " + ("engine" if r["cache_bytes"] is not None else "polled")
    figures += ", times: " + r["timings_source"]
    rate = {k: r["n_images"] / t[k] if t.get(k) else None for k in ("pass1", "pass3")}
    return [
        r["config"], f"{r['n']:,}", f"{c} x {h} x {w}", _fmt(r["peak_bytes"] / MB),
        _fmt(r["own_bytes"] / MB), _fmt((r["peak_bytes"] - r["own_bytes"]) / MB),
        _fmt(cache / MB, 1), _fmt(dense / MB, 1), _fmt(100 * cache / dense, 1),
        _fmt(ckpt / MB, 1), _fmt(rate["pass1"], 1), _fmt(t.get("pass2"), 2),
        _fmt(rate["pass3"], 1), _fmt(r["seconds"], 1), figures, r["status"],
    ]  # fmt: skip


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(r)) + " |" for r in rows]
    return "\n".join(lines)


def _free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def parse(argv: list[str] | None) -> argparse.Namespace:
    default_root = Path(tempfile.gettempdir()) / "lce-bench-scale"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=scale_probe.BRODEN_N, help="images (Broden: 63,305)")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--probe-dir", type=Path, default=default_root / "probe")
    p.add_argument("--work-dir", type=Path, default=default_root / "runs", help="lakes, caches")
    p.add_argument("--channels", type=int, default=0, help="override the stand-in's channels")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--label-size", type=int, default=112)
    p.add_argument("--quantile", type=float, default=0.005)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0, help="loader workers (their RSS is apart)")
    p.add_argument("--no-features", action="store_true", help="extract with --no-features")
    p.add_argument("--max-cache-gb", type=float, default=0.0, help="0: 90%% of the free disk")
    p.add_argument("--max-rss-gb", type=float, default=0.0, help="0: 90%% of MemAvailable")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between size samples")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        p.error(f"--configs: unknown {', '.join(unknown)}; expected {', '.join(CONFIGS)}")
    if args.max_cache_gb <= 0:
        args.max_cache_gb = 0.9 * _free_bytes(args.work_dir) / 1e9
    if args.max_rss_gb <= 0:
        args.max_rss_gb = 0.9 * _status_kb_meminfo("MemAvailable") / 1e6
    return args


def _status_kb_meminfo(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    if args.child:
        child(json.loads(args.child))
        return []
    load = os.getloadavg()
    made = scale_probe.ensure_full(args.probe_dir, args.n, 0, args.image_size, args.label_size)
    probe = scale_probe.view(args.probe_dir, args.n)
    print(
        f"probe: {made['n']:,} images under {args.probe_dir} ({made['generated']:,} generated "
        f"now in {made['seconds']:.1f} s); disk {made['apparent_bytes'] / MB:,.0f} MB of files, "
        f"{made['allocated_bytes'] / MB:,.0f} MB allocated",
        flush=True,
    )
    rows = []
    for name in args.configs.split(","):
        print(f"{name}: running on {args.n:,} images ...", flush=True)
        rows.append(measure(name, probe, args))
        print(f"{name}: {rows[-1]['status']} in {rows[-1]['wall']:.1f} s", flush=True)
    import torch

    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores "
        f"({platform.machine()}), torch {torch.__version__}, device {args.device}, batch "
        f"{args.batch_size}, workers {args.workers}, q {args.quantile}, features "
        f"{'off' if args.no_features else 'on'}; load average {load[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
