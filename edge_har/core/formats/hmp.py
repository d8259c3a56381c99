"""Format ``hmp``: the UCI HMP wrist-accelerometer set in its original layout, a preset of ``folder``.

B. Bruno, F. Mastrogiovanni, A. Sgorbissa, T. Vernazza, R. Zaccaria: "Analysis of human
behavior recognition algorithms based on acceleration data", ICRA 2013, pp. 1602-1607; its
README.txt and MANUAL.txt document the layout and coding.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from edge_har.core.formats.base import DataFormat, Dataset, FormatOptions
from edge_har.core.formats.common import include_model_field, skip_bad_field, subject_regex_field
from edge_har.core.formats.folder import load_folder

# UCI HMP: 3-axis wrist accelerometer, 32 Hz, codes 0..63 for -1.5 g..+1.5 g
# (MANUAL.txt 4.2: real_val = -1.5g + (coded_val/63)*3g). File names end in the
# volunteer's id, "[gN]" (g = f or m); *_MODEL trials add "_k" (walk-f1_3.txt).
# Any "<letters><digits>" id is accepted, so HMP-style sets of one's own (s1, p12) work too.
HMP_NAME = "hmp"
HMP_RATE_HZ = 32.0
HMP_CHANNELS = ("x", "y", "z")
HMP_SCALE = (3.0 / 63.0,)
HMP_OFFSET = (-1.5,)
HMP_UNITS = "g"
HMP_SUBJECT_REGEX = r"-([A-Za-z]+\d+)(?:_\d+)?\.txt$"
HMP_FILE_PATTERN = re.compile(r"^Accelerometer-\d{4}(?:-\d{2}){5}-.+-[A-Za-z]+\d+(?:_\d+)?\.txt$")


class HmpOptions(FormatOptions):
    """HMP fixes rate, channels and scaling; these are all it takes."""

    include_model_trials: bool = include_model_field()
    skip_bad: bool = skip_bad_field()
    subject_regex: Optional[str] = subject_regex_field()


class HmpFormat(DataFormat):
    name = HMP_NAME
    options = HmpOptions
    detects = "a folder of Accelerometer-*-<id>.txt files (32 Hz, x/y/z, code*3/63-1.5 g)"
    needs = "folder"
    hint = "; the HMP preset fixes rate, channels and scaling (use --format folder to set them)"

    def detect(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if any(HMP_FILE_PATTERN.match(f.name) for f in sub.iterdir() if f.is_file()):
                return True
        return False

    def load(self, path: Path, options: HmpOptions) -> Dataset:
        return load_hmp(
            path,
            include_model=options.include_model_trials,
            skip_bad=options.skip_bad,
            subject_regex=options.subject_regex,
        )


def load_hmp(
    root: str | Path, *, include_model: bool = False, skip_bad: bool = False, subject_regex: str | None = None
) -> Dataset:
    """The UCI HMP wrist-accelerometer set in its original layout (its README.txt and MANUAL.txt).

    Channels x, y, z (x toward the hand, y to the left, z out of the back of
    the hand: MANUAL.txt 3); 32 Hz; value = code * 3/63 - 1.5 in g; subject =
    the volunteer id at the end of the file name (f1, m3, ...). The ``*_MODEL``
    trials repeat regular trials, so they are left out unless ``include_model``.
    """
    ds = load_folder(
        root,
        sample_rate_hz=HMP_RATE_HZ,
        subject_regex=subject_regex or HMP_SUBJECT_REGEX,
        channels=HMP_CHANNELS,
        scale=HMP_SCALE,
        offset=HMP_OFFSET,
        units=HMP_UNITS,
        include_model=include_model,
        skip_bad=skip_bad,
        name=HMP_NAME,
    )
    ds.format = HMP_NAME
    return ds
