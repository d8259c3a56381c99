"""Which recording a clip comes from, so a split that tests on scenes it trained on is named.

Clips cut from one recording (or filmed of one person in one scene) look alike: a clip
split that puts some in training and others in test measures how well the model
remembers the scene, not how it recognises the action. Public data sets say which
recording a clip belongs to in its file name; a ``--subject-regex`` says it for any
other layout:

* UCF101 and its kin: ``v_ApplyEyeMakeup_g08_c01.avi``: group ``g08`` (25 groups, each
  filmed in one place by one person);
* KTH: ``person01_boxing_d2_uncomp.avi``: ``person01``;
* with ``--subject-regex``, the clip's subject.

A new naming scheme is one more entry in ``PATTERNS``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("UCF101 group", re.compile(r"_(g\d{2,})_c\d+"), r"_(g\d+)_c"),
    ("KTH person", re.compile(r"^(person\d+)_"), r"^(person\d+)_"),
)


def recording_group(clip: Any) -> tuple[str, str] | None:
    """(kind, group) of a clip: its subject (``--subject-regex``), else a known file-name scheme; None if unknown."""
    subject = getattr(clip, "subject", None)
    if subject is not None:
        return ("subject", str(subject))
    stem = Path(str(clip.source)).stem
    for kind, pattern, _ in PATTERNS:
        match = pattern.search(stem)
        if match:
            return (kind, match.group(1))
    return None


def shared_groups(clips: Sequence[Any], train: Sequence[int], test: Sequence[int]) -> tuple[str | None, list[str]]:
    """(kind, groups) with clips on both sides: the recordings the test split shares with training."""
    seen: dict[str, str] = {}
    for i in train:
        g = recording_group(clips[i])
        if g is not None:
            seen[g[1]] = g[0]
    shared = sorted({g[1] for i in test if (g := recording_group(clips[i])) is not None and g[1] in seen})
    return (seen[shared[0]] if shared else None), shared


def suggested_regex(kind: str | None) -> str | None:
    """The ``--subject-regex`` that splits by the groups of ``kind`` (None for a subject regex already given)."""
    return next((regex for name, _, regex in PATTERNS if name == kind), None)
