"""Format ``uci-har``: UCI HAR, "Human Activity Recognition Using Smartphones" (D. Anguita, A. Ghio,
L. Oneto, X. Parra, J. L. Reyes-Ortiz, ESANN 2013), in its original extracted layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError, FormatOptions
from edge_har.core.formats.common import file_list_hash, labels_of, skip_bad_field
from edge_har.core.recordings import Recording, RecordingError, read_samples_result

log = logging.getLogger(__name__)

# UCI HAR: 50 Hz, already cut into 128-sample windows (2.56 s, 50% overlap).
# Channel order of every window (and of the bundle's input), fixed here:
UCI_HAR_NAME = "uci-har"
UCI_HAR_RATE_HZ = 50.0
UCI_HAR_WINDOW = 128
UCI_HAR_SIGNALS = (
    "body_acc_x", "body_acc_y", "body_acc_z",
    "body_gyro_x", "body_gyro_y", "body_gyro_z",
    "total_acc_x", "total_acc_y", "total_acc_z",
)  # fmt: skip
UCI_HAR_UNITS = "g (body_acc, total_acc), rad/s (body_gyro)"
UCI_HAR_SIDES = ("train", "test")


class UciHarOptions(FormatOptions):
    """UCI HAR's rate, channels and labels come from its own files."""

    skip_bad: bool = skip_bad_field()


class UciHarFormat(DataFormat):
    name = UCI_HAR_NAME
    options = UciHarOptions
    detects = "a folder with train/Inertial Signals"
    needs = "folder"
    hint = "; UCI HAR's rate, channels and labels come from its own files"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (uci_har_root(path) / "train" / "Inertial Signals").is_dir()

    def load(self, path: Path, options: UciHarOptions) -> Dataset:
        return load_uci_har(path, skip_bad=options.skip_bad)


def uci_har_root(root: Path) -> Path:
    """The "UCI HAR Dataset" folder: ``root`` itself, or the folder of that name in it."""
    nested = root / "UCI HAR Dataset"
    return nested if not (root / "train").is_dir() and nested.is_dir() else root


def _activity_names(root: Path, files: list[Path]) -> dict[int, str]:
    labels_file = root / "activity_labels.txt"
    if not labels_file.is_file():
        log.warning("%s: no activity_labels.txt; classes are named by their numbers", root)
        return {}
    names: dict[int, str] = {}
    for lineno, line in enumerate(labels_file.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{labels_file}:{lineno}: expected '<id> <NAME>', got {line.strip()!r}")
        names[int(parts[0])] = parts[1]
    files.append(labels_file)
    return names


def _read_uci_column_file(path: Path, skip_bad: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing {what} file (not the UCI HAR layout?)")
    try:
        result = read_samples_result(path, n_channels=1, skip_bad=skip_bad)
    except RecordingError as exc:
        raise DatasetError(str(exc)) from exc
    values = result.samples[:, 0]
    fractional = np.flatnonzero(values != np.round(values))
    if len(fractional):
        line = int(result.line_numbers[fractional[0]])
        raise DatasetError(f"{path}:{line}: {what} must be a whole number, got {values[fractional[0]]}")
    return values.astype(np.int64), result.line_numbers


def load_uci_har(root: str | Path, *, skip_bad: bool = False) -> Dataset:
    """UCI HAR in its extracted layout; each 128-sample window is one recording.

    ``root`` is the "UCI HAR Dataset" folder (or the folder holding it). Reads
    ``<side>/Inertial Signals/<signal>_<side>.txt`` for the nine signals in
    ``UCI_HAR_SIGNALS`` order, ``y_<side>.txt`` and ``subject_<side>.txt``, for
    side train and test, and ``activity_labels.txt`` for class names. The
    train/test partition (by subject) becomes ``predefined_split``. Windows
    overlap by half, so consecutive windows of one subject and activity form
    one split group: a split never separates them.
    A row is line N of all eleven files of its side; with ``skip_bad``, a line
    bad in any of them drops that window everywhere.
    """
    root = uci_har_root(Path(root))
    files: list[Path] = []
    names = _activity_names(root, files)
    recordings: list[Recording] = []
    predefined: dict[str, str] = {}
    groups: list[str] = []
    skipped: dict[str, int] = {}
    for side in UCI_HAR_SIDES:
        folder = root / side / "Inertial Signals"
        if not folder.is_dir():
            raise DatasetError(f"{root}: missing '{side}/Inertial Signals' (not the UCI HAR layout)")
        y, y_lines = _read_uci_column_file(root / side / f"y_{side}.txt", skip_bad, "activity label")
        subjects, s_lines = _read_uci_column_file(root / side / f"subject_{side}.txt", skip_bad, "subject")
        files += [root / side / f"y_{side}.txt", root / side / f"subject_{side}.txt"]
        signals: list[tuple[np.ndarray, np.ndarray]] = []
        for signal in UCI_HAR_SIGNALS:
            f = folder / f"{signal}_{side}.txt"
            if not f.is_file():
                raise DatasetError(f"{f}: missing signal file (UCI HAR has {', '.join(UCI_HAR_SIGNALS)})")
            try:
                result = read_samples_result(f, n_channels=UCI_HAR_WINDOW, skip_bad=skip_bad)
            except RecordingError as exc:
                raise DatasetError(f"{exc} (UCI HAR rows are windows of {UCI_HAR_WINDOW} samples)") from exc
            signals.append((result.samples, result.line_numbers))
            files.append(f)
        line_sets = [y_lines, s_lines] + [lines for _, lines in signals]
        if not skip_bad:
            counts = {len(lines) for lines in line_sets}
            if len(counts) != 1:
                detail = ", ".join(
                    f"{n}: {len(lines)}"
                    for n, lines in zip(
                        [f"y_{side}.txt", f"subject_{side}.txt"] + [f"{s}_{side}.txt" for s in UCI_HAR_SIGNALS],
                        line_sets,
                    )
                )
                raise DatasetError(f"{root / side}: the files differ in row count ({detail}); each row is one window")
        common = line_sets[0]
        for lines in line_sets[1:]:
            common = np.intersect1d(common, lines)
        dropped = int(max(len(lines) for lines in line_sets) - len(common))
        if dropped:
            skipped[f"{side}/Inertial Signals"] = dropped
            log.warning(
                "%s: %d window(s) dropped: a line of theirs was malformed in at least one file", root / side, dropped
            )

        def pick(values: np.ndarray, lines: np.ndarray) -> np.ndarray:
            return values[np.searchsorted(lines, common)]

        y_c, s_c = pick(y, y_lines), pick(subjects, s_lines)
        unknown = sorted(set(y_c.tolist()) - set(names)) if names else []
        if unknown:
            line = int(common[np.flatnonzero(y_c == unknown[0])[0]])
            raise DatasetError(
                f"{root / side / f'y_{side}.txt'}:{line}: activity {unknown[0]} is not in activity_labels.txt "
                f"(ids {', '.join(map(str, sorted(names)))})"
            )
        windows = np.stack([pick(values, lines) for values, lines in signals], axis=-1)  # (n, 128, 9)
        run = 0
        for k, line in enumerate(common):
            label = names.get(int(y_c[k]), str(int(y_c[k])))
            subject = f"s{int(s_c[k])}"
            if k and (y_c[k] != y_c[k - 1] or s_c[k] != s_c[k - 1] or line != common[k - 1] + 1):
                run += 1
            source = f"{folder}:line {int(line)}"
            recordings.append(Recording(windows[k], label, source, subject, UCI_HAR_RATE_HZ))
            predefined[source] = side
            groups.append(f"{side}:run {run}")
    return Dataset(
        name=UCI_HAR_NAME,
        root=root,
        recordings=recordings,
        labels=labels_of(recordings, root),
        channels=UCI_HAR_SIGNALS,
        sample_rate_hz=UCI_HAR_RATE_HZ,
        units=UCI_HAR_UNITS,
        file_list_sha256=file_list_hash(files, root),
        n_files=len(files),
        native_window=UCI_HAR_WINDOW,
        predefined_split=predefined,
        skipped=skipped,
        format="uci-har",
        path=root,
        split_groups=groups,
    )


# ------------------------------------------------------------------ format detection and dispatch
