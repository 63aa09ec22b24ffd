"""`python -m im2txt_storage fetch|sync|mirror ...` (docs/contracts.md; docs/storage.md).

Keys come only from UFILE_PUBLIC_KEY / UFILE_PRIVATE_KEY, domain suffixes from UFILE_UPLOAD_SUFFIX /
UFILE_DOWNLOAD_SUFFIX. Exit codes: 0 done, 1 a transfer failed, 2 bad arguments or environment."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
import time
from pathlib import Path

from .client import ClientSettings, ConfigError, Credentials, StorageError, UFileClient, redact
from .fetch import FetchPair, fetch
from .mirror import DEFAULT_INCLUDE, Mirror, ReadOnlyUFile, interruptible_sleep
from .paths import parse_ufile_url
from .sidecar import DEFAULT_FINAL_DEADLINE, run_sync
from .stopping import set_on_signal
from .sync import Syncer
from .termination import write_reason

log = logging.getLogger("im2txt_storage")

# After SIGTERM, how long `mirror` waits for a download in flight before it exits anyway (nothing is lost: the
# download goes to a temporary file, removed at the next start).
MIRROR_STOP_GRACE = 2.0


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=... msg="..."` (UTC), redacted as a last line of defence."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        msg = redact(record.getMessage()).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%SZ")
        return f'ts={ts} level={record.levelname.lower()} logger={record.name} msg="{msg}"'


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--parallel", type=_positive_int, default=16, help="concurrent transfers (default 16)")
    common.add_argument("--multipart-threshold-mib", type=_positive_int, default=16,
                        help="files of at least this many MiB are uploaded in 4 MiB parts (default 16)")
    common.add_argument("--timeout", type=_positive_float, default=120.0,
                        help="seconds without data before a request is retried (default 120)")
    common.add_argument("--attempts", type=_positive_int, default=6, help="tries per request (default 6)")
    common.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    common.add_argument("--insecure-http", dest="https", action="store_false",
                        help="send UFile requests over plain HTTP (default: HTTPS, certificates checked against "
                        "the system's CAs or REQUESTS_CA_BUNDLE); only for endpoints without TLS, by the cluster "
                        "admin's choice (the operator's --ufile-insecure-http)")
    # allow_abbrev=False everywhere (subparsers do not inherit it): only full flag names are accepted.
    parser = argparse.ArgumentParser(prog="python -m im2txt_storage", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", parents=[common], allow_abbrev=False,
                       help="data path -> data dir; existing output -> output dir")
    f.add_argument("--data-url", help="ufile://bucket/prefix/ holding the TFRecords and inception_v3.ckpt")
    f.add_argument("--data-dir", type=Path, help="where the data goes (/data/data)")
    f.add_argument("--output-url", help="ufile://bucket/prefix/ of the job's output (checkpoints)")
    f.add_argument("--output-dir", type=Path, help="where existing output goes (/data/output)")
    s = sub.add_parser("sync", parents=[common], allow_abbrev=False,
                       help="upload the output dir periodically and on SIGTERM")
    s.add_argument("--output-url", required=True, help="ufile://bucket/prefix/ of the job's output")
    s.add_argument("--output-dir", type=Path, required=True, help="the folder to upload (/data/output)")
    s.add_argument("--interval", type=_positive_float, default=600.0, help="seconds between uploads (600)")
    s.add_argument("--final-deadline-seconds", type=_positive_float, default=DEFAULT_FINAL_DEADLINE,
                   help="after SIGTERM (or --until-file), finish the final upload within this many seconds or "
                   "exit 1 saying which checkpoint the bucket's index names (default "
                   f"{DEFAULT_FINAL_DEADLINE:g}: a 300 s grace period less the trainer's own last save)")
    s.add_argument("--until-file", type=Path, help="also stop (after a final upload) when this file appears")
    s.add_argument("--chief-only", action="store_true",
                   help="in a multi-node stage (an Indexed Job), upload only from the chief, completion index 0: "
                        "another worker's pod waits for SIGTERM (or --until-file) and uploads nothing")
    s.add_argument("--no-prune", dest="prune", action="store_false",
                   help="keep remote checkpoints the trainer deleted locally (default: delete them once the "
                   "uploaded index no longer names them)")
    m = sub.add_parser("mirror", parents=[common], allow_abbrev=False,
                       help="read-only: copy the output's TensorBoard event files to a local folder periodically")
    m.add_argument("--output-url", required=True, help="ufile://bucket/prefix/ of the training's output")
    m.add_argument("--output-dir", type=Path, required=True, help="the local copy (TensorBoard's --logdir)")
    m.add_argument("--interval", type=_positive_float, default=30.0, help="seconds between passes (30)")
    m.add_argument("--include", action="append", metavar="GLOB",
                   help="copy objects whose file name matches this glob; repeatable (default: "
                   f"{' '.join(DEFAULT_INCLUDE)}, TensorBoard's event files)")
    m.add_argument("--once", action="store_true", help="one pass, then exit (1 if any file failed)")
    m.add_argument("--no-prune", dest="prune", action="store_false",
                   help="keep local copies of files deleted from UFile (default: remove them)")
    return parser


def _pairs(args: argparse.Namespace) -> list[FetchPair]:
    pairs = []
    for role in ("data", "output"):
        url, folder = getattr(args, f"{role}_url"), getattr(args, f"{role}_dir")
        if (url is None) != (folder is None):
            raise ConfigError(f"--{role}-url and --{role}-dir go together (got only one of them)")
        if url is not None:
            pairs.append(FetchPair(parse_ufile_url(url, field=f"--{role}-url"), folder, role))
    if not pairs:
        raise ConfigError("fetch needs --data-url/--data-dir and/or --output-url/--output-dir")
    return pairs


def _mirror(args: argparse.Namespace, client: UFileClient) -> int:
    """Passes run on a worker thread; the main thread waits for it or for SIGTERM/SIGINT. On a signal the
    worker stops at the next file or retry back-off; a download still in flight after MIRROR_STOP_GRACE
    seconds is abandoned (os._exit: the thread pool would otherwise be joined until its read timeout)."""
    url = parse_ufile_url(args.output_url, field="--output-url")
    include = args.include or list(DEFAULT_INCLUDE)
    if any(not glob for glob in include):
        raise ConfigError("--include needs a non-empty glob")
    stop, wake, done = threading.Event(), threading.Event(), threading.Event()
    failure: list[BaseException] = []

    set_on_signal((stop, wake), log, "mirror: %s received, stopping")
    client.sleep = interruptible_sleep(stop)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    mirror = Mirror(ReadOnlyUFile(client), url, args.output_dir, include=include, parallel=args.parallel,
                    prune=args.prune, stop=stop)

    def work() -> None:
        try:
            if args.once:
                mirror.run_once()
            else:
                mirror.run(args.interval)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()
            wake.set()

    threading.Thread(target=work, name="mirror", daemon=True).start()
    wake.wait()
    if not done.wait(MIRROR_STOP_GRACE):
        log.info("mirror: a download is still in flight; exiting without it")
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
    if failure:
        raise failure[0]
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code, reason = _run(args)
    if reason:
        print(f"im2txt_storage {args.command}: {reason}", file=sys.stderr)
        write_reason(args.command, reason.removeprefix("failed: "))
    return code


def _run(args: argparse.Namespace) -> tuple[int, str]:
    """-> (exit code, the failure's one-line reason or "")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(args.log_level.upper())
    try:
        creds = Credentials.from_env()
        settings = ClientSettings.from_env(
            read_timeout=args.timeout, attempts=args.attempts,
            multipart_threshold=args.multipart_threshold_mib * 1024 * 1024, https=args.https,
        )
        if not args.https:
            log.warning("%s: UFile requests go over plain HTTP (--insecure-http): signatures and data can be read "
                        "and replayed on the way", args.command)
        if args.command == "fetch":
            pairs = _pairs(args)
            client = UFileClient(creds, settings, pool_size=args.parallel)
            fetch(client, pairs, parallel=args.parallel)
            return 0, ""
        if args.command == "mirror":
            return _mirror(args, UFileClient(creds, settings, pool_size=args.parallel)), ""
        url = parse_ufile_url(args.output_url, field="--output-url")
        stop = threading.Event()
        set_on_signal((stop,), log, "sync: %s received, final upload")
        index = os.environ.get("JOB_COMPLETION_INDEX", "")
        if args.chief_only and index not in ("", "0"):
            # Worker N's train_dir is not the model's (the chief alone writes checkpoints): nothing to upload.
            log.info("sync: worker %s is not the chief (index 0): nothing to upload", index)
            while not stop.wait(0.5):
                if args.until_file is not None and args.until_file.exists():
                    break
            return 0, ""
        args.output_dir.mkdir(parents=True, exist_ok=True)
        syncer = Syncer(UFileClient(creds, settings, pool_size=args.parallel), url, args.output_dir,
                        parallel=args.parallel, prune=args.prune)
        # The periodic rounds' retries wait at most a quarter of an interval: the next round comes soon anyway.
        quick = dataclasses.replace(settings, backoff=min(settings.backoff, args.interval / 8),
                                    backoff_max=min(settings.backoff_max, args.interval / 4))
        run_sync(syncer, UFileClient(creds, quick, pool_size=args.parallel), args.interval, stop,
                 final_deadline=args.final_deadline_seconds, until_file=args.until_file)
        if published := syncer.published_checkpoint():  # the operator reads the stage's last upload from here
            write_reason("sync", f"published checkpoint {published}")
        return 0, ""
    except (ConfigError, ValueError) as exc:
        return 2, f"error: {redact(str(exc))}"
    except StorageError as exc:
        return 1, f"failed: {exc}"
    except OSError as exc:
        return 1, f"failed: local file error: {redact(str(exc))}"


def _exit(code: int) -> None:
    """Exit; at once if a transfer thread still hangs on a request past `sync`'s deadline (interpreter exit would
    join it: concurrent.futures does), so the sidecar ends inside the pod's grace period."""
    if any(t.is_alive() and t is not threading.current_thread() for t in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
