"""What a data format is: a name, an options model, ``detect(path)`` and ``load(path, options)``.

A format reads one layout of recorded data (a folder of class folders, one long CSV, UCI HAR,
...) into a :class:`Dataset`: raw samples per recording plus what a bundle must know about
them. The same object serves ``edge-har convert`` / ``evaluate`` / ``bench`` on the
workstation and the replay source on the device, so both sides cut the same windows from
the same files. Its options are a pydantic model whose every field is described: the command
line flags and their ``--help`` are generated from it (:mod:`edge_har.core.formats.cli`), and
bundle.json records the validated options so the device can read the data the same way.

numpy and pydantic only (no TensorFlow): this runs on the device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_har.core.errors import EdgeHarError
from edge_har.core.recordings import Recording

__all__ = ["DataFormat", "Dataset", "DatasetError", "FormatOptions", "ReaderRecord"]


class DatasetError(EdgeHarError, ValueError):
    """A data set that cannot be used as given; the message names the file or the option."""


class FormatOptions(BaseModel):
    """The options of one format. Every field has a description (it is the flag's ``--help``).

    Field names are the command-line flags' destinations (``sample_rate`` is ``--sample-rate``);
    ``json_schema_extra`` may add ``metavar``, ``aliases`` (more flag spellings) and ``cli_type``
    (``rate``, ``floats``, ``names``) where the annotation alone does not say how to parse it.
    None means "not given"; a format says in :attr:`DataFormat.required` which it needs.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ReaderRecord(BaseModel):
    """``provenance.dataset.reader`` in bundle.json: the format and options that read the data.

    ``options`` holds the format's options plus the ones every format takes (``columns``,
    ``classes``, ``label_map``), as JSON; the device's replay reads its files with them.
    """

    model_config = ConfigDict(extra="allow")

    format: str = Field(min_length=1, max_length=100, description="The registered format name.")
    options: dict[str, Any] = Field(default_factory=dict, description="Its options, by field name.")


@dataclass
class Dataset:
    """Recordings plus what a bundle must know about them (rate, channels, scaling, provenance).

    ``split_groups`` (one key per recording, or None for "every recording its
    own group") names recordings that must land on the same side of a split:
    UCI HAR's overlapping windows of one run, an HMP model trial and the trial
    it was cut from.
    """

    name: str
    root: Path
    recordings: list[Recording]
    labels: list[str]
    channels: tuple[str, ...]
    sample_rate_hz: float
    scale: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)
    units: str = ""
    file_list_sha256: str = ""
    n_files: int = 0
    native_window: int | None = None
    predefined_split: dict[str, str] | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    format: str = "folder"
    path: Path | None = None  # what the user pointed at (the CSV file itself for a long CSV)
    split_groups: list[str] | None = None
    columns: list[int] | None = None  # the file columns --columns picked, in channel order
    kept_classes: list[str] | None = None  # --classes
    label_map: dict[str, str | None] | None = None  # --label-map: original class -> label (None: left out)
    header: tuple[str, ...] | None = None  # the column names every file's header line gives (folder layout)
    reader: ReaderRecord | None = None  # the format and options that read it (bundle.json, the device's replay)
    bad_line_reasons: dict[str, int] = field(default_factory=dict)  # skip_bad's dropped lines by reason
    # What resampling by timestamps did (rates, unit, gap bound, gaps, pieces, dropped stamps); None: not resampled.
    resampling: dict[str, Any] | None = None
    # Options the format worked out from the data (a detected time unit, the rate it resampled to), which the
    # reader record keeps so a replay of other files reads them the same way.
    resolved_options: dict[str, Any] = field(default_factory=dict)

    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def group_keys(self) -> list[str]:
        """The split group of each recording (its own source when there are no groups)."""
        if self.split_groups is None:
            return [r.source for r in self.recordings]
        return list(self.split_groups)

    def describe(self) -> dict[str, Any]:
        """Provenance for bundle.json: enough to know, and to find again, the data that made a model."""
        subjects = sorted({r.subject for r in self.recordings if r.subject})
        out: dict[str, Any] = {
            "name": self.name,
            "format": self.format,
            "path": str(Path(self.path or self.root).resolve()),
            "root": str(Path(self.root).resolve()),
            "n_recordings": len(self.recordings),
            "n_files": self.n_files,
            "n_samples": int(sum(len(r) for r in self.recordings)),
            "file_list_sha256": self.file_list_sha256,
            "recordings_per_class": dict(sorted(Counter(r.label for r in self.recordings).items())),
            "subjects": subjects,
            "recordings_without_subject": sum(1 for r in self.recordings if not r.subject),
            "sample_rate_hz": self.sample_rate_hz,
            "channels": list(self.channels),
            "scale": list(self.scale),
            "offset": list(self.offset),
            "units": self.units,
            "skipped_lines": int(sum(self.skipped.values())),
            "skipped_per_file": dict(sorted(self.skipped.items())),
        }
        if self.native_window is not None:
            out["native_window"] = self.native_window
        if self.predefined_split is not None:
            out["predefined_split"] = dict(sorted(Counter(self.predefined_split.values()).items()))
        if self.split_groups is not None:
            out["split_groups"] = len(set(self.split_groups))
        if self.columns is not None:
            out["columns"] = list(self.columns)
        if self.kept_classes is not None:
            out["classes"] = list(self.kept_classes)
        if self.label_map is not None:
            out["label_map"] = dict(self.label_map)
        if self.resampling is not None:
            out["resampling"] = dict(self.resampling)
        if self.reader is not None:
            out["reader"] = self.reader.model_dump(mode="json")
        return out


class DataFormat(ABC):
    """One data layout. Subclass, set the class attributes, implement :meth:`detect` and :meth:`load`,
    and add one ``register(...)`` line (:mod:`edge_har.core.formats.registry`).

    ``load`` receives options already validated by :attr:`options` and already checked for
    :attr:`required`; it raises :class:`DatasetError` (message naming the file or the flag) for
    anything it cannot read.
    """

    name: ClassVar[str]  # the --format value and bundle.json's reader.format
    options: ClassVar[type[FormatOptions]]  # the options it takes (each one a command-line flag)
    detects: ClassVar[str] = ""  # what auto-detection looks for, for --format's help ("" = never detected)
    needs: ClassVar[Literal["file", "folder", "any"]] = "any"  # what --data must be
    # option -> the message when it is missing ("{how}" becomes "detected" or "given")
    required: ClassVar[dict[str, str]] = {}
    # required option -> another option that stands in for it (a timestamp column gives the rate)
    required_unless: ClassVar[dict[str, str]] = {}
    # option -> the value ``load`` takes when it is not given: the reader record keeps it, so a replay of an
    # old bundle reads as that bundle's data was read even after a default changes
    defaults: ClassVar[dict[str, Any]] = {}
    # an option whose presence picks this format when --format is auto (``--intervals``), if any
    selected_by: ClassVar[str | None] = None
    hint: ClassVar[str] = ""  # appended to "--x does not apply to format <name>" messages
    columns_are_channels: ClassVar[bool] = False  # --columns picks the channels by name at read time (a CSV)
    help_group: ClassVar[tuple[str, str] | None] = None  # (title, text): its own options get their own --help group

    @abstractmethod
    def detect(self, path: Path) -> bool:
        """True when ``path`` (which exists) is in this layout; cheap (looks at names, not contents)."""

    @abstractmethod
    def load(self, path: Path, options: Any) -> Dataset:
        """Read ``path`` with ``options`` (an instance of :attr:`options`) into a :class:`Dataset`."""
