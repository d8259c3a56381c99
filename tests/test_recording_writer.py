"""RecordingWriter (edge_har.device.recording): parts, rotation, labels, budget, a full disk, a power cut.

Real files: a full disk is /dev/full behind a part's name, a power cut is a child process
SIGKILLed while it writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edge_har.core.recording_layout import (
    LABELS_FILE,
    LabelSegment,
    LayoutError,
    RecordingMeta,
    read_labels,
    read_meta,
    read_parts,
    read_parts_detail,
)
from edge_har.device.recording import RecordingFull, RecordingWriter

T0 = 1_765_000_000.0
RATE = 50.0


def meta() -> RecordingMeta:
    return RecordingMeta(
        device_id="pi-1", session_id="20251206T054640Z", started=T0, channels=["ax", "ay", "az"], sample_rate_hz=RATE
    )


def chunk(i: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Samples i*n .. i*n+n-1; every value is the sample's index (so losses show as gaps)."""
    k = np.arange(i * n, (i + 1) * n)
    return T0 + k / RATE, np.repeat(k[:, None], 3, axis=1).astype(np.float32)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_writes_parts_that_read_back(tmp_path):
    s = tmp_path / "pi-1" / "20251206T054640Z"
    with RecordingWriter(s, meta()) as w:
        for i in range(5):
            w.write(*chunk(i))
        assert w.samples_written == 50
        assert w.part_path == s / "part-00000.csv"
        assert w.finished_parts() == []
    assert read_meta(s) == meta()
    t, x = read_parts(s)
    assert x[:, 0].tolist() == list(range(50))
    assert np.allclose(t, T0 + np.arange(50) / RATE, atol=1e-6, rtol=0)
    assert w.bytes_written == (s / "part-00000.csv").stat().st_size
    assert w.finished_parts() == [s / "part-00000.csv"]
    assert read_labels(s) == []


def test_refuses_a_folder_that_holds_a_session(tmp_path):
    RecordingWriter(tmp_path, meta()).close()
    with pytest.raises(LayoutError, match="already exists"):
        RecordingWriter(tmp_path, meta())


def test_rotates_by_bytes_and_by_age(tmp_path):
    clock = Clock()
    w = RecordingWriter(tmp_path / "a", meta(), rotate_bytes=2000, clock=clock)
    for i in range(20):
        w.write(*chunk(i))
    w.close()
    parts = sorted((tmp_path / "a").glob("part-*.csv"))
    assert len(parts) > 3 and all(p.stat().st_size <= 2000 for p in parts)
    assert read_parts(tmp_path / "a")[1][:, 0].tolist() == list(range(200))

    w = RecordingWriter(tmp_path / "b", meta(), rotate_s=60, clock=clock)
    w.write(*chunk(0))
    clock.now += 59
    w.write(*chunk(1))
    assert w.finished_parts() == []
    clock.now += 1
    w.write(*chunk(2))
    assert w.finished_parts() == [tmp_path / "b" / "part-00000.csv"]
    w.close()
    got = read_parts_detail(tmp_path / "b")
    assert got.part_of.tolist() == [0] * 20 + [1] * 10


def test_fsyncs_at_most_every_interval(tmp_path):
    clock = Clock()
    w = RecordingWriter(tmp_path, meta(), fsync_interval_s=1.0, clock=clock)
    w.write(*chunk(0))
    assert w.samples_synced == 0
    clock.now = 0.5
    w.write(*chunk(1))
    assert w.samples_synced == 0
    clock.now = 1.0
    w.write(*chunk(2))
    assert w.samples_synced == 30
    w.close()


def test_labels_are_segments_rewritten_on_every_change(tmp_path):
    w = RecordingWriter(tmp_path, meta())
    w.set_label("walk", T0)
    assert read_labels(tmp_path) == [LabelSegment("walk", T0, None)]
    w.write(*chunk(0))
    w.set_label("walk", T0 + 0.1)  # the same label: no change
    w.set_label("sit", T0 + 0.1)
    w.set_label(None, T0 + 0.15)
    w.set_label("run", T0 + 0.15)
    with pytest.raises(LayoutError, match="control character"):
        w.set_label("bad\nlabel", T0 + 0.16)
    assert w.label == "run"
    w.write(*chunk(1))
    w.close()
    assert read_labels(tmp_path) == [
        LabelSegment("walk", T0, T0 + 0.1),
        LabelSegment("sit", T0 + 0.1, T0 + 0.15),
        LabelSegment("run", T0 + 0.15, T0 + 19 / RATE + 1 / RATE),
    ]


def test_non_finite_rows_are_left_out_and_counted(tmp_path):
    t, x = chunk(0)
    x[3, 1] = np.nan
    t[5] = np.inf
    with RecordingWriter(tmp_path, meta()) as w:
        w.write(t, x)
    assert w.samples_dropped == 2 and w.samples_written == 8
    assert len(read_parts(tmp_path)[0]) == 8


def test_budget_reached_stops_before_the_chunk(tmp_path):
    w = RecordingWriter(tmp_path, meta(), budget_bytes=3000)
    with pytest.raises(RecordingFull) as err:
        for i in range(100):
            w.write(*chunk(i))
    msg = str(err.value)
    assert "budget of" in msg and "(3000 bytes)" in msg and "part-00000.csv" in msg
    assert w.bytes_written <= 3000
    with pytest.raises(RecordingFull):
        w.write(*chunk(99))
    w.close()
    t, x = read_parts(tmp_path)
    assert len(t) == w.samples_written and x[:, 0].tolist() == list(range(len(t)))
    assert (tmp_path / "part-00000.csv").stat().st_size == w.bytes_written
    assert isinstance(err.value, OSError)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_names_the_path_and_keeps_earlier_parts(tmp_path):
    os.symlink("/dev/full", tmp_path / "part-00001.csv")
    w = RecordingWriter(tmp_path, meta(), rotate_bytes=1000)
    with pytest.raises(RecordingFull) as err:
        for i in range(100):
            w.write(*chunk(i))
    msg = str(err.value)
    assert str(tmp_path / "part-00001.csv") in msg and "disk full" in msg
    assert w.finished_parts() == [tmp_path / "part-00000.csv"]
    written = w.samples_written
    w.close()
    os.unlink(tmp_path / "part-00001.csv")
    t, x = read_parts(tmp_path)
    assert len(t) == written and x[:, 0].tolist() == list(range(written))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_on_the_first_part(tmp_path):
    os.symlink("/dev/full", tmp_path / "part-00000.csv")
    w = RecordingWriter(tmp_path, meta())
    with pytest.raises(RecordingFull, match=r"part-00000.csv: disk full"):
        w.write(*chunk(0))
    assert w.samples_written == 0
    w.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from edge_har.core.recording_layout import RecordingMeta
    from edge_har.device.recording import RecordingWriter

    meta = RecordingMeta(device_id="pi-1", session_id="s", started=0.0, channels=["ax", "ay", "az"],
                         sample_rate_hz=1000.0)
    w = RecordingWriter(Path(sys.argv[1]), meta, rotate_bytes=20000, fsync_interval_s=0.05)
    w.set_label("walk", 0.0)
    synced = 0
    i = 0
    while True:
        k = np.arange(i * 20, i * 20 + 20)
        w.write(k / 1000.0, np.repeat(k[:, None], 3, axis=1).astype(np.float32))
        i += 1
        if w.samples_synced != synced:
            synced = w.samples_synced
            print(synced, flush=True)
        time.sleep(0.002)
    """
)


def test_a_killed_writer_leaves_a_readable_session(tmp_path):
    s = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(s)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    reported = 0
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    for line in proc.stdout:
        reported = int(line)
        if reported >= 3000 or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reported >= 3000
    t, x = read_parts(s)
    n = len(t)
    assert n >= reported  # nothing the writer had synced is lost
    assert x[:, 0].tolist() == list(range(n))  # every part valid, no sample lost or repeated
    assert len(list(s.glob("part-*.csv"))) > 1
    assert read_labels(s) == [LabelSegment("walk", 0.0, None)]
    assert not list(s.glob(".*tmp*"))
    assert (s / LABELS_FILE).read_text().startswith("label,start,end\n")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: a disk that really fills up (needs the right to mount; skipped without it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        pytest.skip("mounting a small tmpfs needs root on Linux")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_disk_that_fills_up_cuts_the_part_back_to_whole_lines(small_disk):
    s = small_disk / "s"
    w = RecordingWriter(s, meta(), rotate_bytes=20_000)
    w.set_label("walk", T0)
    with pytest.raises(RecordingFull) as err:
        for i in range(10_000):
            w.write(*chunk(i, n=7))
    assert "disk full" in str(err.value) and str(s / "part-0000") in str(err.value)
    written = w.samples_written
    assert written > 1000
    parts = sorted(s.glob("part-*.csv"))
    assert all(p.read_bytes().endswith(b"\n") for p in parts)  # no part ends in a torn line
    try:  # take whatever the cut-back freed
        with open(small_disk / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    except OSError:
        pass
    with pytest.raises(RecordingFull, match=r"labels.csv: disk full"):
        w.set_label("sit", T0 + 100)
    assert w.label == "walk"
    with pytest.raises(RecordingFull, match=r"labels.csv: disk full"):
        w.close()  # the open segment's end cannot be written either: the file keeps its last version
    w.close()  # closed: nothing more to do
    t, x = read_parts(s)
    assert len(t) == written and x[:, 0].tolist() == list(range(written))
    assert read_labels(s) == [LabelSegment("walk", T0, None)]
