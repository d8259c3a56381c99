"""``edge-har record``: record the device's own labelled data (no TensorFlow, no interpreter).

Imports only argparse at import time, so ``edge-har --help`` stays fast on a Pi.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_EPILOG = """\
examples:
  edge-har record --config /etc/edge-har/config.yaml --out ~/recordings --label-keys
  edge-har record --config pi.yaml --out rec --push http://workstation:8080 --password-file ~/.serve-password
  edge-har record --config new-sensor.yaml --out rec --channels 3 --rate 50 --channel-names ax,ay,az \\
      --classes sit,walk,run --duration 600          # before any bundle exists

What it writes: DIR/<device_id>/<YYYYmmddTHHMMSSZ>/ with recording.json, part-NNNNN.csv (raw values,
rotated by --rotate-mb / --rotate-min, fsync'd every second) and labels.csv (label,start,end), the
layout `edge-har convert --data DIR` and `edge-har serve` read. A camera source (source.type: camera)
records frames instead: video.json, part-NNNNN.mjpeg (JPEG frames, a Motion-JPEG stream any player
opens) with part-NNNNN.frames.csv (each frame's capture time), and the same labels.csv; that layout
is what `edge-har convert-video --data DIR` reads (each labelled segment becomes a clip).

Labels: from the terminal with --label-keys (a digit picks class N of the menu shown, a typed name +
Enter starts a segment, '-' ends it), and over MQTT: <prefix>/<id>/label/set takes a class name or
{"label": "walk"} ("" / "none" / {"label": null} end the segment); a name that is not a class is
refused on <prefix>/<id>/label/error and in the log, and the recording goes on. <prefix>/<id>/record/set
takes ON/OFF (start/stop). Retained states: label/state, record/state; record/signal is a live view
(<= 25 samples/s). With mqtt.home_assistant.enabled, a select (the label) and a switch (recording)
appear in Home Assistant.

Push: with --push URL, finished parts, recording.json and labels.csv go to `edge-har serve` in the
background, resumed from what serve already holds; a server that is away is retried with backoff and
nothing local is deleted. Sessions of earlier runs that serve lacks are sent too.

Exit status: 0 after SIGTERM/SIGINT/SIGHUP, --duration or the end of a replay; 2 for arguments that
cannot work; 1 for a config, bundle or MQTT/TLS setting that cannot (a line per problem, naming the file
and key); 3 when the disk is full or --budget-mb is reached: the session is closed with every file
readable, record/state says why, and one line naming the path is printed.
--push-only exits 0 when serve holds every session under DIR/<device_id>, 4 when some are not there yet
after --push-wait (run it again: it resumes). Upload the daemon's captured windows this way:
  edge-har record --config pi.yaml --out /var/lib/edge-har/captures --push http://host:8080 --push-only
"""


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "record",
        description=(
            "Record labelled sensor data or camera frames on the device, for training or personalising a model: the configured\n"
            "source (what `edge-har run` reads, with the same sample checks) into session folders, labels from the\n"
            "terminal or MQTT (Home Assistant), optionally pushed to `edge-har serve`. No model or TFLite runtime\n"
            "is needed."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="device config (YAML), as for run")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="recording set folder; sessions go to DIR/<device_id>/"
    )
    parser.add_argument(
        "--rotate-mb",
        type=_positive_float,
        default=None,
        metavar="MB",
        help="start a new part at this size (default 8; 64 for a camera)",
    )
    parser.add_argument(
        "--rotate-min",
        type=_positive_float,
        default=10.0,
        metavar="MIN",
        help="start a new part after this many minutes (default 10); finished parts are what --push uploads",
    )
    parser.add_argument(
        "--budget-mb",
        type=_non_negative_float,
        default=500.0,
        metavar="MB",
        help="stop (exit 3) when DIR/<device_id> holds this much, earlier sessions included (default 500; 0 = none)",
    )
    parser.add_argument(
        "--label-keys",
        action="store_true",
        help="labels from the terminal: a digit picks class N, a name + Enter starts a segment, '-' ends it "
        "(lines from a pipe work too)",
    )
    parser.add_argument(
        "--classes",
        metavar="A,B,C",
        default=None,
        help="the classes labels may name: replaces the bundle's labels, or adds to them when it starts with '+' "
        "(--classes +jump,fall); needed while the bundle does not exist",
    )
    parser.add_argument("--no-mqtt", action="store_true", help="no MQTT: labels from the terminal only")
    parser.add_argument(
        "--push", metavar="URL", default=None, help="upload to edge-har serve at URL (e.g. http://host:8080)"
    )
    parser.add_argument(
        "--password-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve's password (first line), sent as a bearer token; default: $EDGE_HAR_PASSWORD",
    )
    parser.add_argument(
        "--push-only",
        action="store_true",
        help="read no source: upload the sessions under --out/<device_id> that serve lacks (a capture: folder, "
        "an earlier run's recordings), retrying for up to --push-wait seconds, then exit (0: all on serve, 4: not)",
    )
    parser.add_argument(
        "--push-wait",
        type=_non_negative_float,
        default=10.0,
        metavar="S",
        help="at exit, seconds to go on uploading what is left (default 10); the rest goes on the next run",
    )
    parser.add_argument(
        "--duration", type=_positive_float, default=None, metavar="S", help="stop after this many seconds"
    )
    parser.add_argument(
        "--start-stopped",
        action="store_true",
        help="wait for record/set ON before the first session (needs MQTT)",
    )
    parser.add_argument(
        "--subject",
        default=None,
        metavar="NAME",
        help="whose data it is (recording.json subject; default the device id)",
    )
    parser.add_argument(
        "--channels",
        type=_positive_int,
        default=None,
        metavar="N",
        help="values per sample, when the config's bundle does not exist yet (or to override it)",
    )
    parser.add_argument(
        "--rate", type=_positive_float, default=None, metavar="HZ", help="nominal sample rate without a bundle"
    )
    parser.add_argument(
        "--channel-names", default=None, metavar="A,B,C", help="channel names without a bundle (default ch1..chN)"
    )
    parser.add_argument(
        "--jpeg-quality",
        type=_positive_int,
        default=90,
        metavar="Q",
        help="a camera source: JPEG quality 1-100 of the recorded frames (default 90)",
    )
    parser.set_defaults(func=_record)
    return parser


PUSH_INCOMPLETE = 4  # --push-only: serve does not hold everything yet


def _record(args: argparse.Namespace) -> int:
    from edge_har.core.errors import CommandError

    if args.push_only:
        return _push_only(args)
    from edge_har.device.recording.record_setup import plan_record
    from edge_har.device.recording.recorder import Recorder, RecordOptions
    from edge_har.device.recording.writer import MIB
    from edge_har.device.sources import make_source

    if args.start_stopped and args.no_mqtt:
        raise CommandError("--start-stopped waits for record/set over MQTT; it cannot go with --no-mqtt")
    if not 1 <= args.jpeg_quality <= 100:
        raise CommandError(f"--jpeg-quality {args.jpeg_quality}: a JPEG quality is 1-100")
    if args.subject is not None and not args.subject.strip():
        raise CommandError("--subject must not be empty")
    plan = plan_record(
        args.config, channels=args.channels, rate_hz=args.rate, channel_names=args.channel_names, classes=args.classes
    )
    cfg = plan.config
    if plan.frames and (args.push or args.channels or args.channel_names):
        flag = "--push" if args.push else ("--channels" if args.channels else "--channel-names")
        raise CommandError(
            f"{flag}: {args.config} records a camera (frames, no channels); push and channel flags are for sensor "
            "sources (copy camera sessions to the workstation with rsync or scp)"
        )
    source = make_source(cfg, len(plan.channels), plan.rate_hz, f"{cfg.mqtt.client_id_for(plan.device_id)}-record")
    scale, offset = plan.scale, plan.offset
    if cfg.source.value_scaling() == (None, None) and source.delivers_physical_units:
        scale, offset = [1.0] * len(plan.channels), [0.0] * len(plan.channels)
    options = RecordOptions(
        out=args.out,
        device_id=plan.device_id,
        channels=plan.channels,
        rate_hz=plan.rate_hz,
        classes=plan.classes,
        units=plan.units,
        scale=scale,
        offset=offset,
        source_type=plan.source_type,
        model_id=plan.model_id,
        subject=args.subject,
        rotate_bytes=max(1, int((args.rotate_mb or (64.0 if plan.frames else 8.0)) * MIB)),
        rotate_s=args.rotate_min * 60.0,
        budget_bytes=int(args.budget_mb * MIB) if args.budget_mb > 0 else None,
        duration_s=args.duration,
        start_stopped=args.start_stopped,
        frames=plan.frames,
        jpeg_quality=args.jpeg_quality,
    )
    make_link = None
    if not args.no_mqtt:
        from edge_har.device.recording.record_mqtt import RecordLink

        def make_link(control: Any, will: dict[str, Any]) -> RecordLink:
            return RecordLink(cfg.mqtt, plan.device_id, control, will)

    pusher = None
    if args.push:
        from edge_har.device.recording.push import Pusher, ServeClient, read_token

        token = read_token(args.password_file)
        if token is None:
            log.info("push: no --password-file or $EDGE_HAR_PASSWORD: serve must run without a password")
        pusher = Pusher(ServeClient(args.push, token), Path(args.out) / plan.device_id, plan.device_id)
    recorder = Recorder(
        options, source, make_link=make_link, pusher=pusher, label_keys=args.label_keys, push_wait_s=args.push_wait
    )
    return recorder.run()


def _push_only(args: argparse.Namespace) -> int:
    """``--push-only``: the uploader alone, once, over a folder that nothing writes to any more."""
    from edge_har.core.errors import CommandError
    from edge_har.device.config import ConfigError, load_config
    from edge_har.device.recording.push import Pusher, ServeClient, read_token

    if not args.push:
        raise CommandError("--push-only uploads to serve: give --push URL")
    try:
        device_id = load_config(args.config).config.effective_device_id()
    except ConfigError as exc:
        for line in exc.problems:
            log.error("config: %s", line)
        return 1
    root = Path(args.out) / device_id
    if not root.is_dir():
        raise CommandError(f"--out {args.out}: no folder {root} of device {device_id!r} to upload")
    pusher = Pusher(ServeClient(args.push, read_token(args.password_file)), root, device_id)
    sessions = len(pusher.sessions())
    if pusher.push_all(args.push_wait):
        log.info("push: serve at %s holds all %d session(s) of %s", args.push, sessions, root)
        return 0
    log.error(
        "push: not everything under %s reached %s within --push-wait %g s; run it again",
        root,
        args.push,
        args.push_wait,
    )
    return PUSH_INCOMPLETE
