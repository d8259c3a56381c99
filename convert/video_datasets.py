"""Video data sets: folders of clips per class, or still images listed in a CSV.

Three layouts, each taking a path (data sets are never copied into the project):

* **clip folders**: ``<root>/<class>/<clip>.avi|.mp4|...``, anything OpenCV
  decodes (KTH, UCF101 and phone recordings all come this way). The class is
  the folder name; an optional regex pulls a subject id from the file name
  (``person(\\d+)`` for KTH) so splits can keep a person on one side.
* **still images**: ``<root>/train/`` + ``<root>/train.csv`` with the columns
  ``filename,label`` (the layout of the Kaggle "Human Action Recognition"
  image set the MobileNetV2 + LSTM image-sequence classifier was built on).
  Each image becomes a one-frame clip.
* **recorded**: camera sessions from ``edge-har record`` (``video.json``, Motion-JPEG parts with
  their frame index, ``labels.csv``; :mod:`edge_har.core.video_recording_layout`) anywhere up to
  three folders below the root. Each labelled segment becomes a clip of the frames captured in it,
  sampled by their capture times; the subject is the session's (``--subject`` at record time, else
  the device id), so a subject split keeps a person on one side.

Frames go through ``edge_har.core.frames`` (the device's own code): sampled at the
model's rate by timestamp, cropped or stretched, resized, converted to RGB and
kept as uint8. Normalisation happens when batches are fed to the model.

Unreadable files (not a video, truncated, a codec this OpenCV lacks) are named
in a warning and skipped, never a crash; a class left with no clips is an
error. Clips with fewer sampled frames than one window are padded (their last
frame repeated: the person holds still) or skipped, as the user chooses, and
counted either way.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError
from edge_har.core.frames import FrameSampler, FrameSpec, resize_frame, window_starts
from edge_har.core.recording_layout import LayoutError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".avi",
    ".mp4",
    ".m4v",
    ".mkv",
    ".mov",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
    ".ogv",
    ".mjpeg",
    ".mjpg",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SHORT_POLICIES = ("pad", "skip")
LAYOUTS = ("auto", "clips", "images", "recorded")
DEFAULT_FPS_WHEN_UNKNOWN = 25.0


class VideoDatasetError(EdgeHarError, ValueError):
    """A data set that cannot be used as given; the message names the file, line or folder."""


class ClipError(EdgeHarError, ValueError):
    """One clip or image cannot be decoded; the loader turns this into a warning."""


@dataclass
class Clip:
    """One labelled clip (or still image), frames sampled and resized for the model."""

    frames: np.ndarray  # (n, H, W, 3) uint8 RGB at the model's size and rate
    label: str
    source: str  # file path
    subject: str | None = None
    source_fps: float | None = None
    decoded_frames: int = 0  # frames read from the file before sampling
    padded_frames: int = 0  # frames added to reach one window
    group: str | None = None  # images cut from one recording (--subject-regex): kept on one side of a split

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class VideoDataset:
    """A loaded data set; ``recordings`` aliases ``clips`` so the sensor splitters apply unchanged."""

    root: Path
    name: str
    layout: str
    labels: list[str]
    clips: list[Clip]
    spec: FrameSpec
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    short_policy: str = "pad"
    short_padded: int = 0
    short_skipped: int = 0
    file_list_sha256: str = ""

    @property
    def recordings(self) -> list[Clip]:
        return self.clips

    @property
    def sample_rate_hz(self) -> float:
        return self.spec.fps

    def class_counts(self) -> dict[str, int]:
        counts = {label: 0 for label in self.labels}
        for clip in self.clips:
            counts[clip.label] += 1
        return counts

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.root.resolve()),
            "layout": self.layout,
            "clips": len(self.clips),
            "frames": int(sum(len(c) for c in self.clips)),
            "classes": self.class_counts(),
            "subjects": sorted({c.subject for c in self.clips if c.subject is not None}),
            "sampled_fps": self.spec.fps,
            "frame_size": [self.spec.width, self.spec.height],
            "skipped_files": [{"file": f, "reason": r} for f, r in self.skipped_files],
            "short_clips": {"policy": self.short_policy, "padded": self.short_padded, "skipped": self.short_skipped},
            "file_list_sha256": self.file_list_sha256,
        }


# ---------------------------------------------------------------- decoding


def decode_clip(
    path: str | Path, spec: FrameSpec, max_frames: int | None = None, default_fps: float = DEFAULT_FPS_WHEN_UNKNOWN
) -> tuple[np.ndarray, float, int]:
    """Decode one file: (frames (n, H, W, 3) uint8 RGB at the model's rate, file fps, frames decoded).

    Frame ``i`` has the timestamp ``i / file_fps``, the same rule the camera
    source uses when it replays a file, so training and the daemon keep the
    same frames. ``max_frames`` caps the frames *kept* (long clips of a static
    scene add little). Raises ClipError naming the file when nothing decodes.
    """
    import cv2

    file = Path(path)
    cap = cv2.VideoCapture(str(file))
    try:
        if not cap.isOpened():
            raise ClipError(f"{file}: OpenCV cannot open it (not a video, or a codec this build lacks)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            log.warning("%s: the file does not state a usable frame rate (%r); assuming %g fps", file, fps, default_fps)
            fps = default_fps
        sampler = FrameSampler(spec.fps)
        kept: list[np.ndarray] = []
        decoded = 0
        while max_frames is None or len(kept) < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if sampler.keep(decoded / fps):
                kept.append(resize_frame(frame, spec))
            decoded += 1
    finally:
        cap.release()
    if decoded == 0:
        raise ClipError(f"{file}: no frame could be decoded (empty, truncated or an unsupported codec)")
    return np.stack(kept), fps, decoded


def read_image(path: str | Path, spec: FrameSpec) -> np.ndarray:
    """One still image as a (1, H, W, 3) uint8 RGB clip; ClipError naming the file when unreadable."""
    import cv2

    file = Path(path)
    if not file.is_file():
        raise ClipError(f"{file}: no such file")
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise ClipError(f"{file}: OpenCV cannot read it as an image")
    return resize_frame(image, spec)[None]


# ---------------------------------------------------------------- layouts


def _file_list_hash(files: Iterable[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(files):
        rel = f.relative_to(root).as_posix()
        digest.update(f"{rel}\t{f.stat().st_size}\n".encode())
    return digest.hexdigest()


def _subject(pattern: re.Pattern[str] | None, name: str) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(name)
    if not match:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _apply_short_policy(frames: np.ndarray, window: int, policy: str) -> tuple[np.ndarray | None, int]:
    """(frames, padded count), or (None, 0) when the clip is skipped."""
    if len(frames) >= window:
        return frames, 0
    if policy == "skip":
        return None, 0
    pad = window - len(frames)
    return np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)]), pad


def find_csv(root: Path, csv_name: str | None, filename_column: str, label_column: str) -> Path | None:
    """``csv_name`` under ``root``, else ``train.csv``, else the one CSV whose header names both columns."""
    if csv_name:
        path = root / csv_name if not Path(csv_name).is_absolute() else Path(csv_name)
        if not path.is_file():
            raise VideoDatasetError(f"{path}: the image list CSV does not exist")
        return path
    if (root / "train.csv").is_file():
        return root / "train.csv"
    found = []
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = [h.strip().lower() for h in next(csv.reader(fh), [])]
        if filename_column.lower() in header and label_column.lower() in header:
            found.append(path)
    if len(found) > 1:
        raise VideoDatasetError(
            f"{root}: several CSV files list images ({', '.join(p.name for p in found)}); choose one with --csv"
        )
    return found[0] if found else None


def detect_layout(
    root: Path, csv_name: str | None = None, filename_column: str = "filename", label_column: str = "label"
) -> str:
    if csv_name or find_csv(root, None, filename_column, label_column) is not None:
        return "images"
    from edge_har.core.video_recording_layout import video_session_dirs

    if video_session_dirs(root):
        return "recorded"
    return "clips"


def _progress(items: Sequence[Any], desc: str, enabled: bool) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", leave=False, disable=not enabled or len(items) < 20)


def load_clip_folders(
    root: str | Path,
    spec: FrameSpec,
    *,
    short: str = "pad",
    subject_regex: str | None = None,
    extensions: Sequence[str] | None = VIDEO_EXTENSIONS,
    classes: Sequence[str] | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> VideoDataset:
    """``<root>/<class>/<clip>`` to a VideoDataset (see the module doc).

    ``extensions=None`` tries every file (anything OpenCV decodes); the default
    list keeps stray notes and thumbnails out of the warnings. ``classes``
    limits the load to those folders, in that order.
    """
    base = Path(root)
    if not base.is_dir():
        raise VideoDatasetError(f"{base}: the data set folder does not exist")
    if short not in SHORT_POLICIES:
        raise VideoDatasetError(f"short-clip policy {short!r} must be one of {', '.join(SHORT_POLICIES)}")
    pattern = re.compile(subject_regex) if subject_regex else None
    folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        by_name = {p.name: p for p in folders}
        missing = [c for c in classes if c not in by_name]
        if missing:
            raise VideoDatasetError(
                f"{base}: no class folder(s) {', '.join(missing)} (found: {', '.join(by_name) or 'none'})"
            )
        folders = [by_name[c] for c in classes]
    if not folders:
        raise VideoDatasetError(f"{base}: no class folders (expected <root>/<class>/<clip>.avi|.mp4|...)")
    wanted = tuple(e.lower() for e in extensions) if extensions else None
    files: list[tuple[Path, str]] = []
    for folder in folders:
        found = sorted(
            f
            for f in folder.iterdir()
            if f.is_file() and not f.name.startswith(".") and (wanted is None or f.suffix.lower() in wanted)
        )
        if not found:
            kinds = ", ".join(wanted) if wanted else "any"
            raise VideoDatasetError(f"{folder}: empty class folder (no clip files; extensions tried: {kinds})")
        files.extend((f, folder.name) for f in found)

    jobs = [
        _ClipJob(
            str(file),
            label,
            _subject(pattern, file.stem),
            partial(decode_clip, file, spec, max_frames=max_frames),
        )
        for file, label in files
    ]
    labels = [folder.name for folder in folders]
    return _decode_all(base, "clips", labels, jobs, spec, short, progress, "decode clips", [f for f, _ in files])


def load_image_csv(
    root: str | Path,
    spec: FrameSpec,
    *,
    csv_name: str | None = None,
    images_dir: str = "train",
    filename_column: str = "filename",
    label_column: str = "label",
    subject_regex: str | None = None,
    progress: bool = True,
) -> VideoDataset:
    """The still-image layout to a VideoDataset of one-frame clips (see the module doc).

    ``subject_regex`` pulls an id from each image's file name (frames of one clip, or one person):
    images sharing it are one group, which a clip split keeps on one side and a subject split
    selects by ``test_subjects``. Without it every image is split on its own, so frames cut from one
    clip land on both sides and the test score measures memory, not recognition.
    """
    base = Path(root)
    pattern = re.compile(subject_regex) if subject_regex else None
    if not base.is_dir():
        raise VideoDatasetError(f"{base}: the data set folder does not exist")
    table = find_csv(base, csv_name, filename_column, label_column)
    if table is None:
        raise VideoDatasetError(
            f"{base}: no train.csv (or other CSV with '{filename_column}' and '{label_column}' columns)"
        )
    folder = base / images_dir
    if not folder.is_dir():
        raise VideoDatasetError(f"{folder}: the image folder named by --images-dir does not exist")
    rows: list[tuple[Path, str, int]] = []
    with open(table, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        for key in (filename_column, label_column):
            if key.lower() not in header:
                raise VideoDatasetError(f"{table}, line 1: no column '{key}' in the header {header}")
        fi, li = header.index(filename_column.lower()), header.index(label_column.lower())
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise VideoDatasetError(f"{table}, line {line_no}: {len(row)} columns, the header has {len(header)}")
            name, label = row[fi].strip(), row[li].strip()
            if not name or not label:
                raise VideoDatasetError(
                    f"{table}, line {line_no}: empty {filename_column if not name else label_column}"
                )
            rows.append((folder / name, label, line_no))
    if not rows:
        raise VideoDatasetError(f"{table}: lists no images")
    labels = sorted({label for _, label, _ in rows})
    clips: list[Clip] = []
    skipped: list[tuple[str, str]] = []
    for path, label, line_no in _progress(rows, "read images", progress):
        try:
            frames = read_image(path, spec)
        except ClipError as exc:
            log.warning("skipping %s (%s, line %d)", exc, table.name, line_no)
            skipped.append((str(path), str(exc).split(": ", 1)[-1]))
            continue
        padded_frames, pad = _apply_short_policy(frames, spec.window, "pad")
        assert padded_frames is not None  # the "pad" policy keeps every clip
        subject = _subject(pattern, path.stem)
        clips.append(Clip(padded_frames, label, str(path), subject, spec.fps, 1, pad, group=subject))
    _check_classes(base, labels, clips, skipped)
    present = [p for p, _, _ in rows if p.is_file()]
    return VideoDataset(
        root=base,
        name=base.name,
        layout="images",
        labels=labels,
        clips=clips,
        spec=spec,
        skipped_files=skipped,
        short_policy="pad",
        short_padded=sum(c.padded_frames > 0 for c in clips),
        file_list_sha256=_file_list_hash(present + [table], base),
    )


def _segment_clip(session: Path, start: float, stop: float, spec: FrameSpec) -> tuple[np.ndarray, float, int]:
    """The frames captured in ``[start, stop)``, sampled at the model's rate by capture time;
    (frames, the rate they are sampled at, frames decoded)."""
    import cv2

    from edge_har.core.video_recording_layout import iter_frames

    sampler = FrameSampler(spec.fps)
    kept: list[np.ndarray] = []
    decoded = 0
    for t, jpeg in iter_frames(session, start, stop):
        decoded += 1
        if not sampler.keep(t):
            continue
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("%s: a frame at %.3f does not decode as JPEG; left out", session, t)
            continue
        kept.append(resize_frame(image, spec))
    if not kept:
        raise ClipError(f"{session}: no frame between {start:.3f} and {stop:.3f}")
    return np.stack(kept), spec.fps, decoded


def load_recorded_video(
    root: str | Path,
    spec: FrameSpec,
    *,
    short: str = "pad",
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> VideoDataset:
    """Camera sessions recorded by ``edge-har record`` to a VideoDataset: one clip per labelled segment.

    Segments of one label that overlap merge; segments of different labels that overlap are an
    error naming both lines of ``labels.csv`` (the intervals layout's rule). A segment without
    frames (a camera that was away) is named in a warning and skipped.
    """
    from edge_har.core.recording_layout import find_overlap, read_labels
    from edge_har.core.video_recording_layout import read_video_meta, video_part_files, video_session_dirs

    base = Path(root)
    if short not in SHORT_POLICIES:
        raise VideoDatasetError(f"short-clip policy {short!r} must be one of {', '.join(SHORT_POLICIES)}")
    sessions = video_session_dirs(base)
    if not sessions:
        raise VideoDatasetError(f"{base}: no camera sessions (folders holding video.json) up to 3 levels down")
    jobs: list[tuple[Path, str, float, float, str]] = []
    files: list[Path] = []
    for session in sessions:
        try:
            meta = read_video_meta(session)
            segments = read_labels(session)
        except LayoutError as exc:
            raise VideoDatasetError(str(exc)) from None
        pair = find_overlap(segments)
        if pair is not None:
            a, b = pair
            raise VideoDatasetError(
                f"{session / 'labels.csv'}: lines {a.line} ({a.label}) and {b.line} ({b.label}) overlap; "
                "a frame can have one label"
            )
        merged: list[list[Any]] = []
        for seg in sorted(segments, key=lambda x: (x.label, x.start)):
            if merged and merged[-1][0] == seg.label and seg.start <= merged[-1][2]:
                merged[-1][2] = max(merged[-1][2], seg.stop)
            else:
                merged.append([seg.label, seg.start, seg.stop])
        jobs.extend((session, label, start, stop, meta.effective_subject) for label, start, stop in merged)
        files.extend([session / "video.json", session / "labels.csv", *video_part_files(session)])
    found = sorted({label for _, label, _, _, _ in jobs})
    if classes:
        missing = [c for c in classes if c not in found]
        if missing:
            raise VideoDatasetError(
                f"{base}: no segments labelled {', '.join(missing)} (found: {', '.join(found) or 'none'})"
            )
        jobs = [j for j in jobs if j[1] in classes]
        labels = list(classes)
    else:
        labels = found
    if not jobs:
        raise VideoDatasetError(f"{base}: the camera sessions hold no labelled segments (labels.csv is empty)")
    clip_jobs = [
        _ClipJob(
            f"{session}@{start:.3f}-{stop:.3f}",
            label,
            subject,
            partial(_segment_clip, session, start, stop, spec),
        )
        for session, label, start, stop, subject in jobs
    ]
    return _decode_all(base, "recorded", labels, clip_jobs, spec, short, progress, "decode segments", files)


@dataclass
class _ClipJob:
    """One clip to decode: where it comes from (a file, or a session's labelled stretch), its truth and how."""

    where: str
    label: str
    subject: str | None
    decode: Callable[[], tuple[np.ndarray, float, int]]  # (frames, source fps, frames decoded)


def _decode_all(
    root: Path,
    layout: str,
    labels: list[str],
    jobs: Sequence[_ClipJob],
    spec: FrameSpec,
    short: str,
    progress: bool,
    desc: str,
    files: Sequence[Path],
) -> VideoDataset:
    """Decode every job into a clip (an unreadable one is named in a warning and skipped; a short one padded
    or skipped by ``short``), then check every class kept a clip."""
    clips: list[Clip] = []
    skipped: list[tuple[str, str]] = []
    padded = short_skipped = 0
    for job in _progress(jobs, desc, progress):
        try:
            frames, fps, decoded = job.decode()
        except (ClipError, LayoutError) as exc:
            reason = str(exc).split(": ", 1)[-1]
            log.warning("skipping %s: %s", job.where, reason)
            skipped.append((job.where, reason))
            continue
        frames_or_none, pad = _apply_short_policy(frames, spec.window, short)
        if frames_or_none is None:
            short_skipped += 1
            continue
        padded += pad > 0
        clips.append(Clip(frames_or_none, job.label, job.where, job.subject, fps, decoded, pad))
    _report_short(spec.window, short, padded, short_skipped)
    _check_classes(root, labels, clips, skipped)
    return VideoDataset(
        root=root,
        name=root.name,
        layout=layout,
        labels=labels,
        clips=clips,
        spec=spec,
        skipped_files=skipped,
        short_policy=short,
        short_padded=padded,
        short_skipped=short_skipped,
        file_list_sha256=_file_list_hash(files, root),
    )


def _report_short(window: int, policy: str, padded: int, skipped: int) -> None:
    if padded:
        log.warning(
            "%d clip(s) had fewer than %d sampled frames and were padded by repeating their last frame", padded, window
        )
    if skipped:
        log.warning(
            "%d clip(s) had fewer than %d sampled frames and were skipped (--short-clips skip)", skipped, window
        )


def _check_classes(root: Path, labels: list[str], clips: list[Clip], skipped: list[tuple[str, str]]) -> None:
    if skipped:
        log.warning(
            "%s: %d unreadable file(s) skipped: %s",
            root,
            len(skipped),
            ", ".join(Path(f).name for f, _ in skipped[:10]) + (" ..." if len(skipped) > 10 else ""),
        )
    have = {c.label for c in clips}
    empty = [label for label in labels if label not in have]
    if empty:
        raise VideoDatasetError(
            f"{root}: class(es) {', '.join(empty)} have no usable clips (all unreadable or shorter than one window)"
        )


def load_video_dataset(
    root: str | Path,
    spec: FrameSpec,
    *,
    layout: str = "auto",
    short: str = "pad",
    subject_regex: str | None = None,
    extensions: Sequence[str] | None = VIDEO_EXTENSIONS,
    classes: Sequence[str] | None = None,
    max_frames: int | None = None,
    csv_name: str | None = None,
    images_dir: str = "train",
    filename_column: str = "filename",
    label_column: str = "label",
    progress: bool = True,
) -> VideoDataset:
    """Load either layout; ``layout="auto"`` picks images when a CSV lists them, clip folders otherwise."""
    base = Path(root)
    if layout not in LAYOUTS:
        raise VideoDatasetError(f"layout {layout!r} must be one of {', '.join(LAYOUTS)}")
    if not base.is_dir():
        raise VideoDatasetError(f"{base}: the data set folder does not exist")
    if layout == "auto":
        layout = detect_layout(base, csv_name, filename_column, label_column)
    if layout == "images":
        return load_image_csv(
            base,
            spec,
            csv_name=csv_name,
            images_dir=images_dir,
            filename_column=filename_column,
            label_column=label_column,
            subject_regex=subject_regex,
            progress=progress,
        )
    if layout == "recorded":
        return load_recorded_video(base, spec, short=short, classes=classes, progress=progress)
    return load_clip_folders(
        base,
        spec,
        short=short,
        subject_regex=subject_regex,
        extensions=extensions,
        classes=classes,
        max_frames=max_frames,
        progress=progress,
    )


# ---------------------------------------------------------------- windows


@dataclass
class WindowIndex:
    """Windows as (clip, first frame) pairs, so frames or per-frame features can be gathered alike."""

    clip: np.ndarray  # (n,) clip index into dataset.clips
    start: np.ndarray  # (n,) first frame of the window
    y: np.ndarray  # (n,) class index into dataset.labels
    window: int

    def __len__(self) -> int:
        return len(self.clip)

    def subset(self, picks: np.ndarray) -> WindowIndex:
        return WindowIndex(self.clip[picks], self.start[picks], self.y[picks], self.window)

    def gather(self, per_clip: Sequence[np.ndarray]) -> np.ndarray:
        """(n, window, ...) from per-clip arrays (frames or features) whose first axis is time."""
        if not len(self):
            tail = per_clip[0].shape[1:] if len(per_clip) else ()
            return np.empty((0, self.window) + tuple(tail), per_clip[0].dtype if len(per_clip) else np.float32)
        return np.stack([per_clip[c][s : s + self.window] for c, s in zip(self.clip, self.start)])


def window_index(dataset: VideoDataset, clip_indices: Sequence[int], window: int, stride: int) -> WindowIndex:
    """Every full window of the chosen clips (a padded clip yields at least one)."""
    label_of = {label: i for i, label in enumerate(dataset.labels)}
    clips, starts, ys = [], [], []
    for ci in clip_indices:
        clip = dataset.clips[int(ci)]
        for s in window_starts(len(clip), window, stride):
            clips.append(int(ci))
            starts.append(s)
            ys.append(label_of[clip.label])
    return WindowIndex(np.asarray(clips, np.int64), np.asarray(starts, np.int64), np.asarray(ys, np.int64), window)


# ---------------------------------------------------------------- splits


@dataclass
class ClipSplit:
    """Clip indices per side; a clip (and with ``by="subject"`` a person) is never on two sides."""

    train: list[int]
    val: list[int]
    test: list[int]
    by: str
    seed: int
    test_subjects: list[str] = field(default_factory=list)
    shared_groups: list[str] = field(default_factory=list)  # recordings with clips in training and test

    def describe(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "seed": self.seed,
            "clips": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "test_subjects": list(self.test_subjects),
            "shared_recording_groups": list(self.shared_groups),
        }


def _stratified(
    indices_by_class: dict[str, list[int]], fraction: float, rng: np.random.Generator, keep_one: bool
) -> tuple[list[int], list[int]]:
    """(taken, rest): ``fraction`` of each class's clips (at least one where ``keep_one`` and 2+ clips)."""
    taken: list[int] = []
    rest: list[int] = []
    for label in sorted(indices_by_class):
        items = list(indices_by_class[label])
        rng.shuffle(items)
        n = int(round(len(items) * fraction))
        if keep_one and fraction > 0 and len(items) >= 2:
            n = max(1, n)
        n = min(n, len(items) - 1) if len(items) > 1 else 0
        taken.extend(items[:n])
        rest.extend(items[n:])
    return sorted(taken), sorted(rest)


def split_clips(
    dataset: VideoDataset,
    *,
    by: str = "clip",
    test_fraction: float = 0.2,
    val_fraction: float = 0.15,
    test_subjects: Sequence[str] | None = None,
    seed: int = 42,
) -> ClipSplit:
    """Stratified by class, grouped by clip (default) or by subject, with a fixed seed.

    ``by="subject"`` puts every clip of ``test_subjects`` in the test split
    (subject-independent evaluation); validation clips are then drawn from
    the other subjects' clips. A class with a single clip can only train, and
    a warning says so. Images sharing a ``Clip.group`` (the image layout with
    ``--subject-regex``) are drawn together, so one clip's frames stay on one side.
    """
    if by not in ("clip", "subject"):
        raise VideoDatasetError(f"split by {by!r} must be clip or subject")
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise VideoDatasetError(f"{name} must be in [0, 1), got {value}")
    rng = np.random.default_rng(seed)
    # The units drawn are groups (images of one recording, Clip.group) or single clips: a group is
    # represented by its first clip and counted under its most frequent label.
    members: dict[int, list[int]] = {}
    first_of: dict[str, int] = {}
    for i, clip in enumerate(dataset.clips):
        rep = i if clip.group is None else first_of.setdefault(clip.group, i)
        members.setdefault(rep, []).append(i)
    by_class: dict[str, list[int]] = {}
    for rep, items in members.items():
        labels = [dataset.clips[i].label for i in items]
        by_class.setdefault(max(sorted(set(labels)), key=labels.count), []).append(rep)

    def expand(reps: Iterable[int]) -> list[int]:
        return sorted(i for r in reps for i in members[r])

    lonely = [label for label, items in by_class.items() if len(items) < 2]
    if lonely:
        log.warning(
            "class(es) %s have a single clip (or image group): it goes to training and the class is not tested",
            ", ".join(lonely),
        )
    chosen_subjects: list[str] = []
    if by == "subject":
        if not test_subjects:
            raise VideoDatasetError("--split subject needs --test-subjects (ids from --subject-regex)")
        missing = [c.source for c in dataset.clips if c.subject is None][:3]
        if missing:
            raise VideoDatasetError(f"no subject id in {', '.join(missing)}: check --subject-regex")
        known = {c.subject for c in dataset.clips if c.subject is not None}
        if len(known) < 2:
            raise VideoDatasetError(
                f"--split subject needs clips of at least two subjects, and --subject-regex finds one "
                f"({', '.join(sorted(known))}) in all {len(dataset.clips)} clips: check the regex, or use --split clip"
            )
        unknown = [s for s in test_subjects if s not in known]
        if unknown:
            raise VideoDatasetError(
                f"test subject(s) {', '.join(unknown)} not in the data (subjects: {', '.join(sorted(known))})"
            )
        if known <= set(test_subjects):
            raise VideoDatasetError(
                f"--test-subjects names every subject ({', '.join(sorted(known))}): none is left to train on"
            )
        chosen_subjects = list(test_subjects)
        test = sorted(i for i, c in enumerate(dataset.clips) if c.subject in chosen_subjects)
        remaining = {
            label: [r for r in reps if dataset.clips[r].subject not in chosen_subjects]
            for label, reps in by_class.items()
        }
    else:
        test_reps, rest = _stratified(by_class, test_fraction, rng, keep_one=True)
        test = expand(test_reps)
        rest_set = set(rest)
        remaining = {label: [r for r in reps if r in rest_set] for label, reps in by_class.items()}
    remaining = {label: reps for label, reps in remaining.items() if reps}
    val_reps, train_reps = _stratified(remaining, val_fraction, rng, keep_one=val_fraction > 0)
    val, train = expand(val_reps), expand(train_reps)
    return ClipSplit(train, val, test, by, seed, chosen_subjects, _warn_shared(dataset, train + val, test))


def _warn_shared(dataset: VideoDataset, train: Sequence[int], test: Sequence[int]) -> list[str]:
    """Warn when test clips come from recordings (scenes, people) that training also has; return those groups."""
    from edge_har.convert.recording_groups import shared_groups, suggested_regex

    kind, shared = shared_groups(dataset.clips, train, test)
    if shared:
        regex = suggested_regex(kind)
        advice = (
            f"split by them with --split subject --subject-regex '{regex}' --test-subjects ..."
            if regex
            else "choose --test-subjects so that no subject is on both sides"
        )
        more = f" and {len(shared) - 8} more" if len(shared) > 8 else ""
        log.warning(
            "the test clips share %d recording group(s) (%s) with the training clips: %s%s. The test figure "
            "measures scenes and people the model has seen, so it is optimistic; %s",
            len(shared),
            kind,
            ", ".join(shared[:8]),
            more,
            advice,
        )
    return shared
