"""Storage benchmark (`make bench-storage`): parallel fetch and upload vs a sequential loop over the SDK.

270 files shaped like the UAI im2txt data set (256 train shards, 8 test, 4 val, inception_v3.ckpt,
word_counts.txt), scaled down ~1000x, served by the UFile stand-in with a fixed latency per request (what a
remote object store costs per request). Both sides run in the same process against the same server.
Prints a table; exits 1 when a speed-up is below the target."""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "trainer"), str(ROOT / "standins")]

from ufile.filemanager import FileManager  # noqa: E402

from im2txt_standins.ufile_server import UFileServer  # noqa: E402
from im2txt_storage.client import ClientSettings, Credentials, UFileClient  # noqa: E402
from im2txt_storage.paths import UFileURL  # noqa: E402
from im2txt_storage.transfer import download_tree, upload_files  # noqa: E402

BUCKET = "im2txt-bench"


def dataset(scale: int) -> dict[str, int]:
    """name -> size in bytes; the real set's shape divided by `scale`."""
    rng = random.Random(0)
    sizes = {f"train-{i:05d}-of-00256": rng.randint(55, 65) * 1_000_000 // scale for i in range(256)}
    sizes |= {f"test-{i:05d}-of-00008": rng.randint(55, 65) * 1_000_000 // scale for i in range(8)}
    sizes |= {f"val-{i:05d}-of-00004": rng.randint(55, 65) * 1_000_000 // scale for i in range(4)}
    sizes |= {"inception_v3.ckpt": 108_000_000 // scale, "word_counts.txt": 190_000 // scale}
    return sizes


def sequential_fetch(fm: FileManager, prefix: str, dest: Path) -> int:
    keys, marker = [], ""
    while True:
        ret, info = fm.getfilelist(BUCKET, prefix=prefix, marker=marker, limit=1000)
        assert info.ok(), info.status_code
        keys += [d["FileName"] for d in ret["DataSet"]]
        marker = ret.get("NextMarker") or ""
        if not marker:
            break
    for key in keys:
        _, info = fm.download_file(BUCKET, key, str(dest / key[len(prefix):]))
        assert info.ok(), info.status_code
    return len(keys)


def sequential_upload(fm: FileManager, src: Path, prefix: str) -> int:
    names = sorted(p.name for p in src.iterdir())
    for name in names:
        _, info = fm.putfile(BUCKET, prefix + name, str(src / name))
        assert info.ok(), info.status_code
    return len(names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--scale", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--target", type=float, default=5.0)
    args = ap.parse_args()
    creds = Credentials("BENCHPUB" + secrets.token_hex(8), "BENCHPRIV" + secrets.token_hex(16))
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    try:
        with UFileServer({creds.public_key: creds.private_key}) as server:
            for name in ("NO_PROXY", "no_proxy", "http_proxy", "https_proxy"):
                os.environ.pop(name, None)
            # HTTPS through the stand-in, both sides of the comparison (the SDK's open_ssl is process-wide).
            os.environ.update(server.client_env())
            sizes = dataset(args.scale)
            src = work / "src"
            src.mkdir()
            for name, size in sizes.items():
                data = os.urandom(size)
                (src / name).write_bytes(data)
                server.put_object(BUCKET, f"data/{name}", data)
            total = sum(sizes.values())
            server.latency = args.latency_ms / 1000
            client = UFileClient(creds, ClientSettings(), pool_size=args.parallel)
            fm = FileManager(creds.public_key, creds.private_key)
            rows = []

            seq_dir, par_dir = work / "seq", work / "par"
            seq_dir.mkdir()
            t0 = time.perf_counter()
            n = sequential_fetch(fm, "data/", seq_dir)
            t_seq = time.perf_counter() - t0
            t0 = time.perf_counter()
            stats = download_tree(client, UFileURL(BUCKET, "data/"), par_dir, parallel=args.parallel)
            t_par = time.perf_counter() - t0
            assert n == len(stats.transferred) == len(sizes)
            assert all((par_dir / k).read_bytes() == (src / k).read_bytes() for k in sizes)
            rows.append(("fetch (list + download + verify)", t_seq, t_par))

            t0 = time.perf_counter()
            sequential_upload(fm, src, "seq-out/")
            t_seq = time.perf_counter() - t0
            t0 = time.perf_counter()
            done = upload_files(client, UFileURL(BUCKET, "par-out/"), src, sorted(sizes), parallel=args.parallel)
            t_par = time.perf_counter() - t0
            assert len(done) == len(sizes) and len(server.list_keys(BUCKET, "par-out/")) == len(sizes)
            rows.append(("upload (put + verify ETag)", t_seq, t_par))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nstorage benchmark: {len(sizes)} files, {total / 2**20:.1f} MiB, {args.latency_ms:g} ms per request, "
          f"parallel {args.parallel} (stand-in over loopback HTTPS, real ufile SDK)")
    print(f"| {'operation':<34} | {'sequential SDK loop':>19} | {'im2txt_storage':>14} | {'speed-up':>8} |")
    print(f"|{'-' * 36}|{'-' * 21}|{'-' * 16}|{'-' * 10}|")
    ok = True
    for name, seq, par in rows:
        ratio = seq / par
        ok &= ratio >= args.target
        print(f"| {name:<34} | {seq:>17.2f} s | {par:>12.2f} s | {ratio:>7.1f}x |")
    print(f"target: >= {args.target:g}x -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
