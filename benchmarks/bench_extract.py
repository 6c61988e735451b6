"""Extraction speed and memory against a forward-only pass, in the same run (not a test).

For ResNet-18 and ResNet-50 layer4 on a generated Broden-format probe set of 224 px images with
112 px label maps, it prints: extraction wall time, forward-only wall time over the same images
(same loader, same batch size), their ratio, and the peak RSS of extraction at N and 4N images.
Each measurement runs in a fresh subprocess so peak RSS is its own. Forward-only and extraction
runs alternate --repeat times and the medians are compared: on a shared 2-core machine a single
pair of runs can differ by 20% from one minute to the next.

    .venv/bin/python benchmarks/bench_extract.py [--n 200] [--models resnet18,resnet50] [--repeat 3]
        [--basis raw|upsampled|raw,upsampled] [--layer layer4] [--device cpu|cuda] [--workers 1]
        [--null-permutations K] [--features-cost] [--folds-cost]

Both bases in one call share one generated probe set (and print one table).

With --null-permutations K each round also runs the extraction with K null permutations, and
a second table compares it with the plain extraction of the same round (pairs and medians).
With --features-cost each round also runs the extraction with --no-features, and a table gives
what keeping the image features (lake table image_features, the default) costs. With
--folds-cost each round also runs the extraction with --folds 1, and a table gives what the
default five fold tallies (lake table unit_concept_tally_folds) cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def child(
    kind: str,
    arch: str,
    probe: str,
    n: int,
    lake: str,
    basis: str,
    device: str,
    batch: int,
    null: int = 0,
    features: bool = True,
    workers: int = 1,
    layer: str = "layer4",
    folds: int = 5,
) -> None:
    """Runs inside the subprocess; prints one JSON line. The forward-only baseline runs the
    whole network whatever ``layer`` is (extraction may stop at the layer)."""
    import resource

    import torch

    from extract.broden import open_probe
    from extract.engine import ExtractConfig, resolve_device, run_extract
    from extract.feed import batches_for, loader
    from extract.models import load_model

    dev = resolve_device(device)
    tic = time.perf_counter()
    if kind == "forward":
        model = load_model(f"torchvision:{arch}", None).module.to(dev)
        p = open_probe(Path(probe))
        p.records = p.records[:n]
        cfg = ExtractConfig(
            model="", layers=["layer4"], probe=Path(probe), lake=Path(lake), workers=workers,
            normalize="imagenet",
        )  # fmt: skip
        with torch.no_grad():
            for items in loader(cfg, p, batches_for(p, list(range(n)), batch), True, False):
                model(torch.stack([it.image for it in items]).to(dev))
        if dev.type == "cuda":
            torch.cuda.synchronize()
    else:
        sub = Path(probe).parent / f"n{n}"
        run_extract(
            ExtractConfig(
                model=f"torchvision:{arch}",
                layers=[layer],
                probe=sub,
                lake=Path(lake),
                name=arch,
                basis=basis,
                device=device,
                batch_size=batch,
                workers=workers,
                progress=False,
                null_permutations=null,
                features=features,
                folds=folds,
            )  # fmt: skip
        )
    seconds = time.perf_counter() - tic
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb}))


def subset(probe: Path, n: int) -> Path:
    """A probe folder with the first n images (index.csv cut, files shared by symlink)."""
    out = probe.parent / f"n{n}"
    if out.exists():
        return out
    out.mkdir()
    for f in probe.iterdir():
        if f.name == "index.csv":
            lines = f.read_text().splitlines()
            (out / f.name).write_text("\n".join(lines[: n + 1]) + "\n")
        else:
            (out / f.name).symlink_to(f)
    return out


def measure(
    kind: str, arch: str, probe: Path, n: int, basis: str, device: str, batch: int, null: int = 0,
    features: bool = True, workers: int = 1, layer: str = "layer4", folds: int = 5,
) -> dict:  # fmt: skip
    if kind == "extract":
        subset(probe, n)
    with tempfile.TemporaryDirectory() as lake:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, arch, str(probe), str(n), lake, basis, device, str(batch), str(null), str(int(features)), str(workers), layer, str(folds)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--basis", default="raw", help="raw, upsampled, or both: raw,upsampled")
    parser.add_argument("--workers", type=int, default=1, help="loader workers of every run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each kind")
    parser.add_argument("--no-4n", action="store_true", help="skip the 4N memory run")
    parser.add_argument(
        "--null-permutations", type=int, default=0, help="also time extraction with K nulls"
    )
    parser.add_argument(
        "--features-cost", action="store_true", help="also time extraction with --no-features"
    )
    parser.add_argument(
        "--folds-cost", action="store_true", help="also time extraction with --folds 1"
    )
    parser.add_argument("--layer", default="layer4", help="the layer extracted")
    parser.add_argument("--child", nargs=13)
    return parser.parse_args()


Row = tuple[str, dict, dict, dict | None, list[dict]]  # arch, forward, extract, 4N, with nulls
Cost = tuple[str, dict, list[dict], list[dict]]  # arch, extract, --no-features, --folds 1


def run_model(args: argparse.Namespace, probe: Path, arch: str, basis: str) -> tuple[Row, Cost]:
    """--repeat alternating rounds of forward-only and extraction (and the optional variants)
    for one model, then the 4N memory run; medians and per-round pairs."""
    fwds, exts, nulls, bare, unfolded = [], [], [], [], []

    def run(kind: str, n: int, null: int = 0, features: bool = True, folds: int = 5) -> dict:
        out = measure(kind, arch, probe, n, basis, args.device, args.batch, null, features,
                      args.workers, args.layer, folds)  # fmt: skip
        # each run as it ends, so a run cut off by a time limit still leaves the earlier ones
        print(f"{arch} {basis} {kind} N={n} null={null} features={features} folds={folds}: "
              f"{out['seconds']:.1f} s", file=sys.stderr)  # fmt: skip
        return out

    for _ in range(args.repeat):
        fwds.append(run("forward", args.n))
        exts.append(run("extract", args.n))
        if args.null_permutations:
            nulls.append(run("extract", args.n, args.null_permutations))
        if args.features_cost:
            bare.append(run("extract", args.n, features=False))
        if args.folds_cost:
            unfolded.append(run("extract", args.n, folds=1))
    fwd = {"seconds": statistics.median(r["seconds"] for r in fwds)}
    ext = {
        "seconds": statistics.median(r["seconds"] for r in exts),
        "rss_mb": max(r["rss_mb"] for r in exts),
        "ratios": [e["seconds"] / f["seconds"] for f, e in zip(fwds, exts, strict=True)],
        "seconds_each": [e["seconds"] for e in exts],
        "basis": basis,
    }
    big = None if args.no_4n else run("extract", args.n * 4)
    return (arch, fwd, ext, big, nulls), (arch, ext, bare, unfolded)


def print_speed(args: argparse.Namespace, rows: list[Row]) -> None:
    print(f"\n{platform.node()} {platform.processor() or platform.machine()}, device={args.device}, "
          f"batch={args.batch}, workers={args.workers}, N={args.n}, medians of {args.repeat} runs")  # fmt: skip
    print(
        "| model | layer | basis | forward-only s (N) | extraction s (N) | ratio (pairs) | img/s | peak RSS N (MB) | peak RSS 4N (MB) | 4N/N |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch, fwd, ext, big, _ in rows:
        ratio = ext["seconds"] / fwd["seconds"]
        rss4 = f"{big['rss_mb']:.0f}" if big else "-"
        growth = f"{big['rss_mb'] / ext['rss_mb']:.2f}" if big else "-"
        pairs = ", ".join(f"{r:.2f}" for r in ext["ratios"])
        print(f"| {arch} | {args.layer} | {ext['basis']} | {fwd['seconds']:.1f} | {ext['seconds']:.1f} | "
              f"{ratio:.2f} ({pairs}) | {args.n / ext['seconds']:.1f} | {ext['rss_mb']:.0f} | {rss4} | {growth} |")  # fmt: skip


def print_nulls(k: int, rows: list[Row]) -> None:
    print(f"\nnull permutations: K = {k} against K = 0, same rounds")
    print("| model | extraction K=0 s | extraction K s | ratio (pairs) |")
    print("|---|---|---|---|")
    for arch, _, ext, _, nulls in rows:
        plain = ext["seconds"]
        with_null = statistics.median(r["seconds"] for r in nulls)
        pairs = ", ".join(
            f"{b['seconds'] / a:.2f}" for a, b in zip(ext["seconds_each"], nulls, strict=True)
        )
        print(f"| {arch} | {plain:.1f} | {with_null:.1f} | {with_null / plain:.2f} ({pairs}) |")


def print_cost(costs: list[Cost], which: int) -> None:
    """What a default costs: the default extraction against the variant without it (which: 2
    for --no-features, 3 for --folds 1), per round and as medians."""
    if which == 2:
        print("\nimage features: extraction (features kept, the default) against --no-features")
        print("| model | basis | --no-features s | features s | cost (pairs) |")
    else:
        print("\nfold tallies: extraction (--folds 5, the default) against --folds 1")
        print("| model | basis | --folds 1 s | --folds 5 s | cost (pairs) |")
    print("|---|---|---|---|---|")
    for cost in costs:
        arch, ext, bare = cost[0], cost[1], (cost[2] if which == 2 else cost[3])
        without = statistics.median(r["seconds"] for r in bare)
        pairs = ", ".join(
            f"{a / b['seconds'] - 1:+.1%}" for a, b in zip(ext["seconds_each"], bare, strict=True)
        )
        print(f"| {arch} | {ext['basis']} | {without:.1f} | {ext['seconds']:.1f} | "
              f"{ext['seconds'] / without - 1:+.1%} ({pairs}) |")  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.child:
        kind, arch, probe, n, lake, basis, device, batch, null, features, workers, layer, k = (
            args.child
        )
        child(
            kind, arch, probe, int(n), lake, basis, device, int(batch), int(null), features == "1",
            int(workers), layer, int(k),
        )  # fmt: skip
        return
    from probe_factory import make_probe

    n4 = args.n * 4
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        tic = time.perf_counter()
        n_images = args.n if args.no_4n else n4
        make_probe(probe, n_images=n_images, size=224, label_size=112)
        print(
            f"probe set: {n_images} images 224 px, label maps 112 px "
            f"({time.perf_counter() - tic:.0f} s)"
        )
        rows: list[Row] = []
        costs: list[Cost] = []
        for basis in args.basis.split(","):
            for arch in args.models.split(","):
                row, cost = run_model(args, probe, arch, basis)
                rows.append(row)
                costs.append(cost)
    print_speed(args, rows)
    if args.null_permutations:
        print_nulls(args.null_permutations, rows)
    if args.features_cost:
        print_cost(costs, 2)
    if args.folds_cost:
        print_cost(costs, 3)


if __name__ == "__main__":
    main()
