"""What the workstation commands say while they work: Keras's per-epoch lines only at DEBUG (as
README says), training and long reads shown as a bar on a terminal or a log line now and then,
and one line when the data is resampled to the model's rate."""

from __future__ import annotations

import argparse
import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.synthetic import write_synthetic_imu_dataset
from edge_har.core import progress
from edge_har.core.formats import load_dataset
from edge_har.core.formats.cli import add_dataset_arguments, dataset_from_args
from edge_har.core.formats.windows import log_resampling


class Terminal(io.StringIO):
    """A stream that says it is a terminal, to see what a user at one sees."""

    def isatty(self) -> bool:
        return True


def messages(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many") / "data"
    return write_synthetic_imu_dataset(root, recordings_per_class=8, subjects=2, seconds=3.0)  # 24 files


# ---------------------------------------------------------------- reading many files


def test_reading_many_files_logs_progress_off_a_terminal(many_files, caplog):
    caplog.set_level(logging.INFO)
    with progress.reading(many_files, log_every_s=0.0, stream=io.StringIO()):
        ds = load_dataset(many_files)
    lines = messages(caplog, "edge_har.core.progress")
    assert len(ds.recordings) == 24
    assert lines[0].startswith("reading data: 1 files, ") and "% of " in lines[0]
    assert lines[-1].startswith("read data: 24 files, ") and "(100% of " in lines[-1]


def test_reading_logs_at_a_low_rate_and_nothing_for_a_fast_read(many_files, caplog):
    caplog.set_level(logging.INFO)
    with progress.reading(many_files, stream=io.StringIO()):  # the default: a line at most every 10 s
        load_dataset(many_files)
    assert messages(caplog, "edge_har.core.progress") == []


def test_reading_many_files_shows_a_bar_on_a_terminal(many_files, caplog):
    caplog.set_level(logging.INFO)
    screen = Terminal()
    with progress.reading(many_files, log_every_s=0.0, stream=screen):
        load_dataset(many_files)
    assert "reading data" in screen.getvalue() and "B/s" in screen.getvalue()
    assert messages(caplog, "edge_har.core.progress") == []  # the bar instead of log lines


def test_a_few_files_or_no_block_show_nothing(many_files, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    few = write_synthetic_imu_dataset(tmp_path / "few", recordings_per_class=2, subjects=1, seconds=3.0)
    screen = Terminal()
    with progress.reading(few, log_every_s=0.0, stream=screen):
        load_dataset(few)
    load_dataset(many_files)  # outside any block: a library call, the device's replay
    assert screen.getvalue() == "" and messages(caplog, "edge_har.core.progress") == []


def test_the_command_lines_data_loading_shows_progress(many_files, caplog, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO)
    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    dataset_from_args(parser.parse_args(["--data", str(many_files)]))
    assert messages(caplog, "edge_har.core.progress")[-1].startswith("read data: 24 files")


# ---------------------------------------------------------------- resampling


def test_convert_says_when_it_resamples_and_from_which_rate(tmp_path, caplog):
    from edge_har.convert.pipeline import ConvertOptions, SensorPath

    data = write_synthetic_imu_dataset(tmp_path / "d", recordings_per_class=4, subjects=2, seconds=6.0, rate_hz=100)
    dataset = load_dataset(data, format="folder", sample_rate=100)
    caplog.set_level(logging.INFO)
    options = ConvertOptions(out=tmp_path / "b", window=64, stride=32, target_rate=50.0)
    SensorPath(options, dataset=dataset).prepare([], {})
    said = messages(caplog, "edge_har.core.formats.windows")
    assert said == [
        "resampling 12 recordings at 100 Hz to the model's 50 Hz (linear interpolation, as the device does)"
    ]

    caplog.clear()
    same = ConvertOptions(out=tmp_path / "c", window=64, stride=32)  # the data's own rate: nothing to say
    SensorPath(same, dataset=dataset).prepare([], {})
    assert messages(caplog, "edge_har.core.formats.windows") == []


def test_the_resampling_line_counts_each_rate(tmp_path, caplog):
    data = write_synthetic_imu_dataset(tmp_path / "d", recordings_per_class=1, subjects=1, seconds=3.0)
    dataset = load_dataset(data)  # 3 recordings at 32 Hz
    dataset.recordings[0].sample_rate_hz = 64.0
    caplog.set_level(logging.INFO)
    log_resampling(dataset, 32.0)
    log_resampling(dataset, 64.0, recording_indices=[1])
    assert messages(caplog, "edge_har.core.formats.windows") == [
        "resampling 1 recording at 64 Hz to the model's 32 Hz (linear interpolation, as the device does)",
        "resampling 1 recording at 32 Hz to the model's 64 Hz (linear interpolation, as the device does)",
    ]


# ---------------------------------------------------------------- training


def windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    t = np.arange(16) / 16.0
    x = np.stack([np.sin(2 * np.pi * (1 + 2 * c) * t)[:, None] * [1.0, 0.5, -0.5] for c in y])
    return (x + 0.2 * rng.normal(size=x.shape)).astype(np.float32), y


def train(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.train import TrainConfig, train_model

    x, y = windows(64, 1)
    xv, yv = windows(32, 2)
    config = TrainConfig(epochs=2, batch_size=32, patience=2, seed=3)  # verbose: the default, as convert runs it
    train_model(x, y, xv, yv, 2, ModelConfig(conv_filters=(4,), lstm_units=(4,)), config, tmp_path)


@pytest.mark.slow  # a real run of its own (~20-35 s): CI's slow step runs it
def test_training_hides_keras_per_epoch_lines_unless_debug(tmp_path, caplog, capfd, monkeypatch):
    import edge_har.convert.train as train_module

    monkeypatch.setattr(train_module, "EPOCH_LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO)
    train(tmp_path / "info")
    out, err = capfd.readouterr()
    assert "Epoch 1/2" not in out + err and "val_loss:" not in out + err, out[-2000:]
    assert "Restoring model weights" not in out + err
    said = messages(caplog, "edge_har.convert.train")
    assert any(m.startswith("training: epoch 2 of at most 2, best val_loss ") for m in said), said

    caplog.set_level(logging.DEBUG)  # --log-level DEBUG: Keras's own lines as well
    train(tmp_path / "debug")
    out, _ = capfd.readouterr()
    assert "Epoch 1/2" in out and "val_loss:" in out


def test_training_progress_is_a_bar_on_a_terminal(caplog):
    pytest.importorskip("tensorflow")
    from edge_har.convert.models import import_tf
    from edge_har.convert.train import epoch_progress

    _, keras = import_tf()
    screen = Terminal()
    caplog.set_level(logging.INFO)
    callback = epoch_progress(keras, 3, "val_loss", stream=screen)
    callback.on_train_begin()
    for epoch, loss in enumerate((0.9, 0.7, 0.8)):
        time.sleep(0.15)  # an epoch takes seconds; the bar redraws at most every 0.1 s
        callback.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
    callback.on_train_end()
    shown = screen.getvalue()
    assert "training" in shown and "3/3" in shown and "best val_loss 0.7000 at epoch 2" in shown
    assert not [m for m in messages(caplog, "edge_har.convert.train") if m.startswith("training:")]
