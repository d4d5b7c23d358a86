"""Situation index: query time, recall and memory at a million embeddings; CLIP images/s.

    python -m bench.retrieval --n 1000000 --dim 512 --queries 1000

Vectors are synthetic and seeded (``--seed``): ``--clusters`` centres drawn uniformly on the
unit sphere, each vector a centre plus Gaussian noise of norm about ``--noise`` (0.6: cosine
about 0.86 to its centre and 0.74 between two members of a cluster, a family of similar
screens), normalised and rounded to float16 as the index stores them. Queries are fresh draws
from the same clusters, not stored vectors.

- build: ``SituationIndex.add`` in batches of ``--batch`` into a new store file: the SQLite
  rows (float16 blobs) and the faiss index, with the switch from exact to HNSW at
  ``--approx-from`` vectors; then ``save()`` (write, fsync, CRC) and a reopen (read the
  sidecar, check its CRC, load the vector-to-attempt map);
- query: ``SituationIndex.search(v, k=10)`` one vector at a time, as a planner calls it (the
  check for vectors other processes added included), at each ``--ef-search``, beside exact
  search (an ``IndexFlatIP`` over the same float16-rounded vectors) on a sample;
- recall@10: the share of the exact 10 nearest that the index returns, over
  ``--recall-queries`` queries;
- memory: the sidecar's size (what faiss holds in memory) and the process's resident growth
  while building (which also counts SQLite's page cache and mapped pages of the store).

The encoder runs with random weights (nothing is downloaded) on random ``--frame-size``
frames, at each of ``--batch-sizes``; images/s count whole ``encode_frames`` calls
(preprocessing included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cairn.experience.situations import (
    APPROX_FROM,
    EF_CONSTRUCTION,
    EF_SEARCH,
    HNSW_M,
    SituationIndex,
)
from cairn.experience.store import ExperienceStore

TARGET_P99_MS = 10.0
K = 10


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float
              ) -> np.ndarray:
    """``n`` unit vectors around random ``centres``, rounded to float16 (as stored)."""
    dim = centres.shape[1]
    x = centres[rng.integers(len(centres), size=n)]
    x += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float16).astype(np.float32)


def draw(seed: int, n: int, dim: int, clusters: int, noise: float, queries: int
         ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    stored = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        end = min(n, start + 100_000)
        stored[start:end] = clustered(rng, centres, end - start, noise)
    return stored, clustered(rng, centres, queries, noise)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def timed_ms(call, items) -> list[float]:
    out = []
    for item in items:
        began = time.perf_counter()
        call(item)
        out.append((time.perf_counter() - began) * 1e3)
    return out


def bench_index(args: argparse.Namespace, workdir: Path) -> None:
    import faiss

    began = time.perf_counter()
    stored, queries = draw(args.seed, args.n, args.dim, args.clusters, args.noise, args.queries)
    print(f"{args.n:,} stored and {args.queries:,} query vectors, {args.dim}-d, "
          f"{args.clusters:,} clusters, noise {args.noise} (drawn in "
          f"{time.perf_counter() - began:.1f} s); faiss {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} OpenMP threads")
    path = workdir / "store.sqlite"
    rss0 = rss_bytes()
    with ExperienceStore(path) as store:
        index = SituationIndex.open(store, "bench", args.dim, args.approx_from)
        began = time.perf_counter()
        for start in range(0, args.n, args.batch):
            end = min(args.n, start + args.batch)
            index.add(np.arange(start + 1, end + 1), stored[start:end])
        build = time.perf_counter() - began
        grown = rss_bytes() - rss0
        began = time.perf_counter()
        index.save()
        save = time.perf_counter() - began
        del index
    with ExperienceStore(path) as store:
        began = time.perf_counter()
        index = SituationIndex.open(store, "bench", args.dim, args.approx_from)
        reopen = time.perf_counter() - began
        kind = f"HNSW{HNSW_M} fp16, efConstruction {EF_CONSTRUCTION}" if index.approximate \
            else "exact"
        sample = queries[:args.recall_queries]
        sweep = {}
        for ef in args.ef_search if index.approximate else [EF_SEARCH]:
            index.ef_search = ef
            lat = timed_ms(lambda q: index.search(q, K), queries)
            sweep[ef] = lat, index.search_many(sample, K)
        load = os.getloadavg()[0]
        sidecar = index.path.stat().st_size
        index = None  # its memory back before the exact index is built
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(stored)
    _, truth = flat.search(sample, K)
    recall = {ef: np.mean([len({a - 1 for a, _ in hits} & set(row.tolist())) / K
                           for hits, row in zip(found, truth, strict=True)])
              for ef, (_, found) in sweep.items()}
    exact = timed_ms(lambda q: flat.search(q[None], K), sample[:args.exact_queries])
    flat.reset()
    table = path.stat().st_size

    print(f"index: {kind}; load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"  {f'build (add, batches of {args.batch:,})':<34}{build:8.1f} s   "
          f"({args.n / build:,.0f} vectors/s)")
    print(f"  {'save (write, fsync, CRC)':<34}{save:8.1f} s")
    print(f"  {'reopen (read, check CRC, map ids)':<34}{reopen:8.1f} s")
    print(f"  memory: sidecar (= faiss in RAM) {mb(sidecar)}, store file {mb(table)}, "
          f"resident growth while building {mb(grown)}")
    print(f"\n{'k=10 nearest, one query at a time':<38}{'queries':>8}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'recall@10':>11}")
    for ef, (lat, _) in sweep.items():
        name = f"SituationIndex.search, efSearch {ef}" if kind != "exact" else \
            "SituationIndex.search"
        default = ef == EF_SEARCH or len(sweep) == 1
        target = f"   target p99 < {TARGET_P99_MS:g} ms" if default else ""
        print(f"{name:<38}{len(lat):>8}{pct(lat, .5):>9.3f}{pct(lat, .99):>9.3f}"
              f"{recall[ef]:>11.3f}{target}")
    print(f"{'exact (faiss IndexFlatIP)':<38}{len(exact):>8}{pct(exact, .5):>9.3f}"
          f"{pct(exact, .99):>9.3f}{1.0:>11.3f}")
    print(f"(recall over {len(sample)} queries)")


def bench_encoder(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cairn.perception.clip import ClipEncoder

    began = time.perf_counter()
    encoder = ClipEncoder(args.model, batch_size=max(args.batch_sizes))
    built = time.perf_counter() - began
    rng = np.random.default_rng(args.seed)
    size = args.frame_size
    print(f"\nencoder {encoder.name} ({encoder.dim}-d, {encoder.image_size[0]} px input), "
          f"{size}x{size} random frames, built in {built:.1f} s, torch threads "
          f"{encoder._torch.get_num_threads()}")
    print(f"{'batch size':>10}{'images':>8}{'images/s':>10}{'ms/image':>10}")
    for batch in args.batch_sizes:
        calls = max(1, -(-args.images // batch))
        frames = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        encoder.encode_frames(frames)  # warm-up
        began = time.perf_counter()
        for _ in range(calls):
            encoder.encode_frames(frames)
        spent = time.perf_counter() - began
        images = calls * batch
        print(f"{batch:>10}{images:>8}{images / spent:>10.1f}{spent / images * 1e3:>10.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors to store")
    parser.add_argument("--dim", type=int, default=512, help="embedding size")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries")
    parser.add_argument("--recall-queries", type=int, default=200,
                        help="queries whose recall is checked against exact search")
    parser.add_argument("--exact-queries", type=int, default=20,
                        help="exact searches timed, one at a time")
    parser.add_argument("--clusters", type=int, default=2000, help="cluster centres")
    parser.add_argument("--noise", type=float, default=0.6, help="noise norm around a centre")
    parser.add_argument("--batch", type=int, default=10_000, help="vectors per add()")
    parser.add_argument("--approx-from", type=int, default=APPROX_FROM,
                        help="vectors from which the index is approximate")
    parser.add_argument("--ef-search", type=int, nargs="+",
                        default=sorted({64, EF_SEARCH, 256, 512}),
                        help="HNSW efSearch values to time, each on the same queries "
                             "(the target applies to the index's default, "
                             f"{EF_SEARCH})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model for images/s")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--images", type=int, default=64, help="frames timed per batch size")
    parser.add_argument("--frame-size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--skip-encoder", action="store_true", help="time the index only")
    parser.add_argument("--skip-index", action="store_true", help="time the encoder only")
    args = parser.parse_args(argv)
    if min(args.n, args.queries, args.recall_queries, args.exact_queries, args.batch) < 1:
        parser.error("--n, --queries, --recall-queries, --exact-queries and --batch must be "
                     "positive")
    args.recall_queries = min(args.recall_queries, args.queries)
    args.exact_queries = min(args.exact_queries, args.recall_queries)

    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}")
    if not args.skip_index:
        workdir = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
        try:
            bench_index(args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.skip_encoder:
        bench_encoder(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
