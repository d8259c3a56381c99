"""The shipped camera configs: their file-playback keys are shown and valid, and their v4l2 backend
cannot be pointed at a file without validate-config saying so (the daemon would idle and exit 0)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edge_har.device.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
CAMERA_CONFIGS = ("pi4-camera.yaml", "pi5-camera.yaml", "usb-webcam.yaml")
PLAYBACK_KEYS = ("realtime", "loop", "stop_at_end")


def _as_file_playback(text: str, clip: Path) -> str:
    """The config as a user edits it for a clip: the commented playback keys switched on, device a file."""
    for key in PLAYBACK_KEYS:
        text, n = re.subn(rf"^(\s+)#({key}: )", r"\1\2", text, flags=re.M)
        assert n == 1, f"#{key}: is not shown once in the source section"
    text, n = re.subn(r"^(\s+device: ).*$", rf"\g<1>{clip}", text, count=1, flags=re.M)
    assert n == 1
    return text


@pytest.mark.parametrize("name", CAMERA_CONFIGS)
def test_camera_config_shows_valid_file_playback_keys(name, tmp_path):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"")
    text = _as_file_playback((REPO / "firmware_configs" / name).read_text(), clip)
    # as shipped (backend v4l2), pointing it at a file is an error naming the key
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any("source.backend" in line and "video file" in line for line in caught.value.problems), caught.value
    # with backend auto, as the comment says, the playback keys load with their documented defaults
    path.write_text(re.sub(r"^(\s+backend: )v4l2", r"\1auto", text, count=1, flags=re.M))
    source = load_config(path).config.source
    assert source.target_kind() == "file"
    assert (source.realtime, source.loop, source.stop_at_end) == (True, False, False)
    defaults = yaml.safe_load(path.read_text())["source"]
    assert {k: defaults[k] for k in PLAYBACK_KEYS} == {"realtime": True, "loop": False, "stop_at_end": False}
