"""Camera-path benchmarks: encoder and head latency, streaming speed-up, sustained frames per second.

    python -m edge_har.benchmarks.video make-bundles --out bench-results/video/bundles      # workstation (TensorFlow)
    edge-har bench video bench-results/video/bundles/mnv2-a035-128 [--clip FILE] [--quick]  # any machine, no TF

Three measurements, each reported as a table on stdout and in ``<out>/video.json``:

* **parts**: per-call latency of each variant's frame encoder (one frame) and
  temporal head (T feature vectors), and of the whole clip model when the
  bundle has one (``--clip-model``), through ``edge_har.core.interpreter`` (the
  device's wrapper), ``num_threads`` as on the device.
* **speed-up**: the same frames streamed through ``VideoRuntime`` in ``split``
  mode (encoder once per frame + head every stride) and in ``clip`` mode (the
  whole clip model over the last T frames at every stride), per prediction,
  for several strides. Measured, not computed from the part latencies.
* **fps**: a clip file read by the camera source (OpenCV decoding,
  ``realtime: false`` so no frame is dropped) through the daemon's two stages
  on two threads (source thread: sampling, preprocessing, encoder; inference
  thread: head and smoothing): frames per second sustained end to end. The
  clip is the user's (``--clip FILE``: their camera's size, codec and rate;
  its first frames also feed the part latencies) or, without it, a synthetic
  320x240 one written at the model's rate.

``--quick`` (CI, a first look on a Pi): 0.3 s per part, strides 1 and 4, two
alternations of the speed-up, a 5 s synthetic clip (or the first 150 frames of
``--clip``); about half a minute on the test bundles. Figures are rounded to
what the timer resolves (3 decimals in ms).

``make-bundles`` converts MobileNetV2 (alpha 0.35 at 128 px, and alpha 1.0 at
224 px) and the tiny plain Conv2D model of the tests on synthetic clips, with
random backbone weights (``--weights none``, frozen) and two training epochs:
latency does not depend on the weights' values, and no ImageNet download is
needed. Their accuracy is meaningless and the int8 gate is waived for them.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_har.benchmarks.report import latency_summary
from edge_har.core.errors import EdgeHarError
from edge_har.core.timing import time_calls

log = logging.getLogger(__name__)


class VideoBenchError(EdgeHarError, ValueError):
    """The bundle or clip cannot be benchmarked as given; the message names it."""


BENCH_MODELS: dict[str, dict[str, Any]] = {
    "mnv2-a035-128": {"backbone": "mobilenetv2", "alpha": 0.35, "input_size": 128, "frames": 8, "lstm_units": (64,)},
    "mnv2-a100-224": {"backbone": "mobilenetv2", "alpha": 1.0, "input_size": 224, "frames": 8, "lstm_units": (64,)},
    "plain-32": {"backbone": "plain", "input_size": 32, "conv_filters": (8, 16), "frames": 8, "lstm_units": (16,)},
}


# ---------------------------------------------------------------- bundles


def make_bundles(out: Path, names: Sequence[str], calibration: int = 64) -> dict[str, Path]:
    """Convert the benchmark models on synthetic clips (random frozen backbones, see the module doc)."""
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.video_models import VideoModelConfig
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video
    from edge_har.convert.video_synthetic import write_synthetic_clip_dataset

    data = write_synthetic_clip_dataset(
        Path(tempfile.mkdtemp(prefix="edge-har-video-bench-")),
        clips_per_class=6,
        seconds=(3.0, 4.0),
        fps=10,
        size=(320, 240),
    )
    made = {}
    for name in names:
        spec = BENCH_MODELS[name]
        config = VideoModelConfig(mode="video", weights="none", train_backbone="no", dropout=0.0, **spec)
        options = VideoConvertOptions(
            out=out / name,
            data=data,
            fps=10,
            stride=4,
            model=config,
            train=TrainConfig(epochs=2, batch_size=16, patience=2, verbose=0),
            calibration_size=calibration,
            allow_int8_drop=True,
            max_int8_drop=100.0,
            clip_model=True,
            overwrite=True,
            progress=False,
            command=f"edge_har.benchmarks.video make-bundles ({name})",
        )
        made[name] = run_convert_video(options)
    return made


# ---------------------------------------------------------------- inputs


def bench_frames(spec: Any, n: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` preprocessed frames of a synthetic 320x240 clip, through the device's frame preprocessing."""
    from edge_har.convert.video_synthetic import pattern_for, render_clip
    from edge_har.core.frames import preprocess_frame

    raw = render_clip(pattern_for("orbit"), n, (320, 240), 10.0, np.random.default_rng(seed))
    return np.stack([preprocess_frame(f, spec) for f in raw])


def clip_frames(clip: Path, spec: Any, n: int = 64) -> np.ndarray:
    """The first ``n`` frames of a user's clip through the device's frame preprocessing."""
    import cv2

    from edge_har.core.frames import preprocess_frame

    cap = cv2.VideoCapture(str(clip))
    frames: list[np.ndarray] = []
    try:
        while len(frames) < n:
            ok, image = cap.read()
            if not ok or image is None:
                break
            frames.append(preprocess_frame(image, spec))
    finally:
        cap.release()
    if len(frames) < 2 * int(spec.window):
        raise VideoBenchError(f"{clip}: {len(frames)} frames decoded, the benchmark needs {2 * int(spec.window)}")
    return np.stack(frames)


def limited_clip(clip: Path, out: Path, max_frames: int) -> Path:
    """The first ``max_frames`` frames of ``clip`` re-encoded (MJPG AVI) for a quick fps run; the clip if shorter."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
    frames: list[np.ndarray] = []
    while len(frames) <= max_frames:
        ok, image = cap.read()
        if not ok or image is None:
            break
        frames.append(image)
    cap.release()
    if len(frames) <= max_frames:
        return clip
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    for image in frames[:max_frames]:
        writer.write(image)
    writer.release()
    return out


def write_bench_clip(path: Path, seconds: float, fps: float, size: tuple[int, int] = (320, 240)) -> Path:
    from edge_har.convert.video_synthetic import pattern_for, render_clip, write_clip

    frames = render_clip(pattern_for("sweep"), int(seconds * fps), size, fps, np.random.default_rng(1))
    return write_clip(path, frames, fps)


# ---------------------------------------------------------------- measurements


def part_latency(
    bundle: Any, variants: Sequence[str], threads: int, min_seconds: float, clip: Path | None = None
) -> list[dict[str, Any]]:
    """Per-call latency of each part of each variant (ms), on ``clip``'s first frames or synthetic ones."""
    from edge_har.core.video_models import VideoModels

    rows = []
    frames = None
    for name in variants:
        models = VideoModels.load(bundle, name, num_threads=threads, load_clip="clip" in bundle.variant(name).parts)
        if frames is None:
            frames = clip_frames(clip, models.spec) if clip is not None else bench_frames(models.spec)
        assert models.encoder is not None and models.head is not None
        feats = np.stack([models.encode(f) for f in frames])
        windows = np.stack([feats[i : i + models.spec.window] for i in range(len(feats) - models.spec.window)])
        parts = [("encoder", models.encoder, frames), ("head", models.head, windows)]
        if models.clip is not None:
            clips = np.stack(
                [frames[i : i + models.spec.window] for i in range(0, len(frames) - models.spec.window, 4)]
            )
            parts.append(("clip", models.clip, clips))
        for part, model, inputs in parts:
            times = 1000 * time_calls(model.predict, inputs, warmup=5, runs=None, min_seconds=min_seconds)  # ms
            summary = latency_summary(times)
            rows.append(
                {
                    "variant": name,
                    "part": part,
                    "threads": threads,
                    "size_kib": round(model.path.stat().st_size / 1024, 1),
                    "input": list(model.input.shape),
                    "input_dtype": model.input.dtype.name,
                    **{k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()},
                }
            )
    return rows


def streaming_speedup(
    bundle: Any, variant: str, strides: Sequence[int], threads: int, frames_n: int = 120, repeats: int = 5
) -> list[dict[str, Any]]:
    """Wall time per prediction: split streaming vs recomputing the whole clip model at every stride.

    The two modes run alternately ``repeats`` times over the same frames and
    the median is kept, so a load spike on a shared machine hits both alike.
    """
    from edge_har.core.video_models import VideoModels
    from edge_har.device.video_runtime import VideoRuntime

    models = VideoModels.load(bundle, variant, num_threads=threads, load_clip=True)
    frames = bench_frames(models.spec, n=frames_n)
    rows = []
    for stride in strides:
        result: dict[str, Any] = {
            "variant": variant,
            "stride": stride,
            "window": models.spec.window,
            "threads": threads,
        }
        per: dict[str, list[float]] = {"split": [], "clip": []}
        runtime: dict[str, Any] = {}
        predictions: dict[str, int] = {}

        def fresh(mode: str) -> None:  # untimed: a new runtime per pass, so no pass starts with a warm window
            runtime["rt"] = VideoRuntime(models, stride=stride, mode=mode)

        def one_pass(mode: str) -> None:
            predictions[mode] = sum(runtime["rt"].push_preprocessed(f) is not None for f in frames)

        for _ in range(repeats):
            for mode in ("split", "clip"):
                seconds = float(time_calls(one_pass, [mode], warmup=0, runs=1, prepare=fresh)[0])
                per[mode].append(1000 * seconds / predictions[mode])
                result["predictions"] = predictions[mode]
        for mode, values in per.items():
            result[f"{mode}_ms_per_prediction"] = round(float(np.median(values)), 3)
        result["speedup"] = round(result["clip_ms_per_prediction"] / result["split_ms_per_prediction"], 2)
        rows.append(result)
    return rows


def sustained_fps(
    bundle_dir: Path, variant: str, clip: Path, threads: int, stride: int | None = None
) -> dict[str, Any]:
    """The daemon's two stages on two threads over a clip file read by the camera source, no frame dropped."""
    from edge_har.device.sources.camera import CameraSourceConfig, CameraStreamSource
    from edge_har.device.video_runtime import VideoStreamRuntime

    rt = VideoStreamRuntime.load(bundle_dir, variant, num_threads=threads, smoothing_window=1, stride=stride)
    windowing = rt.windowing()
    source = CameraStreamSource(CameraSourceConfig(device=str(clip), realtime=False))
    windows: queue.Queue[Any] = queue.Queue(maxsize=64)
    done = threading.Event()
    predictions: list[Any] = []

    def source_stage() -> None:
        source.start()
        while True:
            chunk = source.read(0.5)
            if chunk is None:
                if source.finished:
                    break
                continue
            for w in windowing.push(chunk):
                windows.put(w)
        done.set()

    started = time.perf_counter()
    thread = threading.Thread(target=source_stage, daemon=True)
    thread.start()
    while not (done.is_set() and windows.empty()):
        try:
            predictions.append(rt.predict(windows.get(timeout=0.2)))
        except queue.Empty:
            continue
    seconds = time.perf_counter() - started
    thread.join()
    status = source.status()
    source.stop()
    frames = status["frames_read"]
    inf = [p.inference_ms for p in predictions]
    e2e = [p.e2e_ms for p in predictions]
    counters = windowing.counters()
    pose = (
        {k: counters.get(k) for k in ("frames_no_person", "windows_no_person", "no_person_s")}
        if "windows_no_person" in counters  # a pose bundle: the windows skipped for want of a person
        else {}
    )
    return {
        "variant": variant,
        "threads": threads,
        "clip": clip.name,
        "frame_size": status["frame_size"],
        "clip_fps": status["camera_fps"],
        "model_fps": rt.spec.fps,
        "stride": windowing.stride,
        "frames_read": frames,
        "frames_encoded": windowing.frames_kept,
        "frames_dropped": status["frames_dropped"],
        "predictions": len(predictions),
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 1),
        "encoded_frames_per_s": round(windowing.frames_kept / seconds, 1),
        "predictions_per_s": round(len(predictions) / seconds, 2),
        "inference_ms_p50": round(float(np.median(inf)), 3) if inf else None,
        "e2e_ms_p50": round(float(np.median(e2e)), 3) if e2e else None,
        "e2e_ms_p99": round(float(np.percentile(e2e, 99)), 3) if e2e else None,
        **pose,
    }


def daemon_fps(
    bundle_dir: Path, variant: str, clip: Path, frames: int, threads: int, broker: str, work: Path
) -> dict[str, Any]:
    """The real daemon (``edge-har run``, a subprocess) with the clip file as its camera, publishing to ``broker``.

    frames/s = frames in the file / (daemon uptime - time to the first prediction): the
    stream's duration without the model loading and broker connection before it.
    """
    import subprocess
    import sys

    import yaml

    host, _, port = broker.partition(":")
    config = {
        "device_id": "bench-video",
        "bundle": str(Path(bundle_dir).resolve()),
        "variant": variant,
        "interpreter": {"num_threads": threads},
        "source": {"type": "camera", "device": str(clip.resolve()), "realtime": False, "stop_at_end": True},
        "smoothing": {"window": 1},
        "mqtt": {"host": host, "port": int(port or 1883), "stats_interval_s": 3600},
        "logging": {"level": "WARNING"},
    }
    work.mkdir(parents=True, exist_ok=True)
    cfg, summary = work / f"daemon-{variant}.yaml", work / f"daemon-{variant}-summary.json"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_har",
            "--log-level",
            "WARNING",
            "run",
            "--config",
            str(cfg),
            "--summary-json",
            str(summary),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not summary.is_file():
        return {"variant": variant, "error": proc.stderr[-500:]}
    s = json.loads(summary.read_text())
    stream_s = s["uptime_s"] - (s["first_prediction_s"] or 0.0)
    counters = s.get("frames") or {}  # the stats' frames section at the end of the run
    pose = (
        {k: counters.get(k) for k in ("frames_no_person", "windows_no_person", "no_person_s")}
        if "windows_no_person" in counters
        else {}
    )
    return {
        "variant": variant,
        "threads": threads,
        "frames": frames,
        "windows": s["windows_total"],
        "process_wall_s": round(wall, 2),
        "first_prediction_s": round(s["first_prediction_s"] or 0.0, 2),
        "stream_s": round(stream_s, 2),
        "frames_per_s": round(frames / stream_s, 1),
        "inference_ms_p50": _round(s["inference_ms"].get("p50"), 3),
        "e2e_ms_p50": _round(s["e2e_ms"].get("p50"), 3),
        "rss_mb": _round(s.get("rss_mb"), 1),
        **pose,
    }


# ---------------------------------------------------------------- report


def _round(value: Any, digits: int) -> Any:
    return round(float(value), digits) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _cell(value: Any, width: int, digits: int) -> str:
    """A number right-aligned to ``width``; a missing one (no prediction came out) as '-', never nan."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        return f"{value:>{width}.{digits}f}"
    return f"{'-':>{width}}"


def format_parts(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'variant':<14} {'part':<8} {'thr':>3} {'KiB':>8} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8}  input"]
    for r in rows:
        lines.append(
            f"{r['variant']:<14} {r['part']:<8} {r['threads']:>3} {r['size_kib']:>8.1f} {r['p50_ms']:>8.3f} "
            f"{r['p90_ms']:>8.3f} {r['mean_ms']:>8.3f}  {r['input']} {r['input_dtype']}"
        )
    return "\n".join(lines)


def format_speedup(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'variant':<14} {'T':>3} {'stride':>6} {'split ms/pred':>14} {'clip ms/pred':>13} {'speed-up':>9}"]
    for r in rows:
        lines.append(
            f"{r['variant']:<14} {r['window']:>3} {r['stride']:>6} {r['split_ms_per_prediction']:>14.3f} "
            f"{r['clip_ms_per_prediction']:>13.3f} {r['speedup']:>8.2f}x"
        )
    return "\n".join(lines)


def format_fps(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'variant':<14} {'thr':>3} {'frames/s':>9} {'encoded/s':>10} {'pred/s':>7} {'dropped':>8} {'e2e p50 ms':>11}"
        "  clip"
    ]
    for r in rows:
        size = "x".join(str(v) for v in r["frame_size"]) if r.get("frame_size") else "?"
        lines.append(
            f"{r['variant']:<14} {r['threads']:>3} {r['frames_per_s']:>9.1f} {r['encoded_frames_per_s']:>10.1f} "
            f"{r['predictions_per_s']:>7.2f} {r['frames_dropped']:>8} {_cell(r['e2e_ms_p50'], 11, 2)}"
            f"  {r['clip']} ({size}, {_round(r['clip_fps'], 1)} fps, {r['frames_read']} frames)"
        )
    if any(not isinstance(r.get("e2e_ms_p50"), (int, float)) for r in rows):
        lines.append("e2e p50 '-': no prediction came out of the clip (shorter than one window)")
    return "\n".join(lines)


@dataclass
class VideoSettings:
    """What ``edge-har bench video`` measures; ``quick_settings()`` is the short run (module doc)."""

    variants: list[str] | None = None
    threads: list[int] = field(default_factory=lambda: [1])
    strides: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    min_seconds: float = 2.0
    fps_seconds: float = 30.0  # the synthetic clip's length; a --clip is read whole (--quick: its first 150 frames)
    speedup_frames: int = 120
    speedup_repeats: int = 5
    clip: Path | None = None
    broker: str | None = None
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> VideoSettings:
        return cls(strides=[1, 4], min_seconds=0.3, fps_seconds=5.0, speedup_frames=48, speedup_repeats=2, quick=True)


QUICK_CLIP_FRAMES = 150


def run_video(bundle_dir: Path, settings: VideoSettings, out: Path) -> dict[str, Any]:
    """Every measurement on one video bundle; returns the suite's results section (``suite: video``)."""
    from edge_har.benchmarks import report
    from edge_har.core.bundle import Bundle

    started = time.perf_counter()
    bundle = Bundle.load(bundle_dir)
    if bundle.kind != "video":
        raise VideoBenchError(f"{bundle.root}: a {bundle.kind} bundle; bench video needs one from convert-video")
    if (bundle.data.get("video") or {}).get("mode") == "pose":  # two pose models + head, not one encoder
        raise VideoBenchError(
            f"{bundle.root}: a pose bundle; measure it with edge-har bench pose {bundle.root} --data CLIPS "
            "(a person found per clip and class, pose-model and head latency, frames/s)"
        )
    if settings.clip is not None and not Path(settings.clip).is_file():
        raise VideoBenchError(f"--clip {settings.clip}: no such file")
    names = list(settings.variants or bundle.variants)
    for name in names:
        bundle.variant(name)  # BundleError naming the known variants
    out.mkdir(parents=True, exist_ok=True)
    section = report.suite_header("video", bundle)
    section["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
    section["video"] = bundle.data.get("video")
    section["training"] = {
        k: (bundle.data.get("training") or {}).get("model", {}).get(k)
        for k in ("backbone", "alpha", "input_size", "weights", "frames")
    }
    section["parts"] = []
    for t in settings.threads:
        section["parts"] += part_latency(bundle, names, t, settings.min_seconds, settings.clip)
    section["speedup"] = []
    for name in names:
        if "clip" in bundle.variant(name).parts:
            section["speedup"] += streaming_speedup(
                bundle, name, settings.strides, settings.threads[0], settings.speedup_frames, settings.speedup_repeats
            )
    if settings.clip is not None:
        clip = Path(settings.clip)
        if settings.quick:
            clip = limited_clip(clip, out / f"quick-{clip.stem}.avi", QUICK_CLIP_FRAMES)
        section["fps_clip"] = {"file": str(settings.clip), "kind": "user clip"}
    else:
        spec_fps = float(bundle.data["preprocessing"]["sample_rate_hz"])
        clip = write_bench_clip(out / "bench_320x240.avi", settings.fps_seconds, spec_fps)
        section["fps_clip"] = {"file": str(clip), "kind": "synthetic 320x240"}
    section["fps"] = [sustained_fps(bundle_dir, name, clip, t) for name in names for t in settings.threads]
    if settings.broker:
        frames = section["fps"][0]["frames_read"]
        section["daemon"] = [
            daemon_fps(bundle_dir, name, clip, frames, settings.threads[0], settings.broker, out / "daemon")
            for name in names
        ]
    return report.finish_section(section, started)


def format_video(section: dict[str, Any]) -> str:
    parts = [format_parts(section["parts"])]
    if section.get("speedup"):
        parts.append(format_speedup(section["speedup"]))
    parts.append(format_fps(section["fps"]))
    daemon = []
    for row in section.get("daemon") or []:
        daemon.append(
            f"daemon {row['variant']:<14} "
            + (
                f"{row['frames_per_s']:.1f} frames/s over {row['stream_s']} s "
                f"(inference p50 {row['inference_ms_p50']} ms, e2e p50 {row['e2e_ms_p50']} ms, "
                f"rss {row['rss_mb']} MiB)"
                if "error" not in row
                else f"failed: {row['error']}"
            )
        )
    if daemon:
        parts.append("\n".join(daemon))
    return "\n\n".join(parts)


def run(
    bundle_dir: Path,
    out: Path,
    variants: Sequence[str] | None,
    threads: Sequence[int],
    strides: Sequence[int],
    min_seconds: float,
    fps_seconds: float,
    broker: str | None = None,
    clip: Path | None = None,
) -> dict[str, Any]:
    """``python -m edge_har.benchmarks.video run``: the same as ``edge-har bench video``, to ``<out>/video-<bundle>.json``."""
    settings = VideoSettings(
        variants=list(variants) if variants else None,
        threads=list(threads),
        strides=list(strides),
        min_seconds=min_seconds,
        fps_seconds=fps_seconds,
        clip=clip,
        broker=broker,
    )
    result = run_video(bundle_dir, settings, out)
    print(format_video(result))
    file = out / f"video-{Path(bundle_dir).name}.json"
    file.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {file}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_har.benchmarks.video", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-bundles", help="convert the benchmark models (needs TensorFlow)")
    mk.add_argument("--out", type=Path, default=Path("bench-results/video/bundles"))
    mk.add_argument("--models", default="mnv2-a035-128,plain-32", help=f"from {', '.join(BENCH_MODELS)}")
    rn = sub.add_parser("run", help="measure a video bundle (no TensorFlow)")
    rn.add_argument("--bundle", type=Path, required=True)
    rn.add_argument("--out", type=Path, default=Path("bench-results/video"))
    rn.add_argument("--variants", default=None, help="comma-separated (default: all)")
    rn.add_argument("--threads", default="1", help="interpreter threads, comma-separated (default: 1)")
    rn.add_argument("--strides", default="1,2,4,8")
    rn.add_argument("--min-seconds", type=float, default=2.0, help="timing per part and variant (default: 2)")
    rn.add_argument("--fps-seconds", type=float, default=30.0, help="length of the 320x240 clip for the fps run")
    rn.add_argument("--clip", type=Path, default=None, help="the fps run (and part latencies) on this clip file")
    rn.add_argument(
        "--broker",
        default=None,
        metavar="HOST[:PORT]",
        help="also run the real daemon (edge-har run) on the clip, publishing to this broker",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.cmd == "make-bundles":
        for name, path in make_bundles(args.out, [m.strip() for m in args.models.split(",") if m.strip()]).items():
            print(f"{name}: {path}")
        return 0
    run(
        args.bundle,
        args.out,
        args.variants.split(",") if args.variants else None,
        [int(t) for t in args.threads.split(",")],
        [int(s) for s in args.strides.split(",")],
        args.min_seconds,
        args.fps_seconds,
        args.broker,
        args.clip,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
