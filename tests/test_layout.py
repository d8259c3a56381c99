"""The package's shape: one installed namespace, one import direction, a lazy command line.

These run the installed ``edge-har`` the way users and systemd do, from folders that hold
files named like the project's own folders, so a regression to generic top-level package
names (or to a CLI that imports every subcommand) fails here.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_har.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Where each installed package's source lives, and its layer: a module may import its own
# layer or a lower one, never a higher one.
PACKAGES = {
    "edge_har.core": (REPO / "edge_har" / "core", 0),
    "edge_har.mqtt": (REPO / "edge_har" / "mqtt", 1),
    "edge_har.device": (REPO / "edge_har" / "device", 2),
    "edge_har.web": (REPO / "edge_har" / "web", 3),
    "edge_har.convert": (REPO / "convert", 4),
    "edge_har.benchmarks": (REPO / "benchmarks", 5),
}
TOP = {"edge_har.cli", "edge_har.demo", "edge_har.subscribe", "edge_har.sign_cli", "edge_har.__main__", "edge_har"}
TOP_LAYER = 6
NO_TENSORFLOW = ("edge_har.core", "edge_har.mqtt", "edge_har.device", "edge_har.subscribe", "edge_har.web")
# edge-har serve sits on the device side (core, mqtt, device); the workstation's convert never
# reaches into it, only its own modules, the command line and the web benchmark import it.
WEB_IMPORTERS = ("edge_har.web", "edge_har.cli", "edge_har.benchmarks")
NO_PAHO = ("edge_har.core",)


def _layer(module: str) -> int:
    for name, (_, layer) in PACKAGES.items():
        if module == name or module.startswith(name + "."):
            return layer
    return TOP_LAYER


def _modules() -> dict[str, Path]:
    found = {}
    for package, (folder, _) in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    for path in (REPO / "edge_har").glob("*.py"):
        found["edge_har" if path.stem == "__init__" else f"edge_har.{path.stem}"] = path
    return found


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` statement names, at any depth (lazy imports count too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (the layout uses absolute ones)"
            out.append((node.lineno, node.module or ""))
    return out


def _problems(module: str, target: str) -> list[str]:
    """Why ``module`` may not import ``target`` (empty: it may)."""
    own, top, out = _layer(module), target.split(".")[0], []
    if top in ("convert", "benchmarks"):
        out.append(f"a generic top-level name; use edge_har.{target}")
    if top == "edge_har" and target not in TOP and _layer(target) > own:
        out.append("a higher layer")
    if top == "edge_har" and target in TOP - {"edge_har"} and own < TOP_LAYER:
        out.append("the command line sits above every package")
    if module.startswith(NO_TENSORFLOW) and top in ("tensorflow", "tf_keras", "keras"):
        out.append("the device side never imports TensorFlow")
    if (target == "edge_har.web" or target.startswith("edge_har.web.")) and not (
        module in WEB_IMPORTERS or module.startswith(tuple(p + "." for p in WEB_IMPORTERS))
    ):
        out.append("only the command line and the benchmarks import edge_har.web")
    if module.startswith(NO_PAHO) and top == "paho":
        out.append("the core imports no MQTT client")
    if _in(module, "edge_har.convert") and _in(target, "edge_har.device"):
        out.append("convert imports the core and mqtt, never the device; what both sides run belongs in edge_har.core")
    return out


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_imports_go_one_way_only():
    problems = []
    modules = _modules()
    assert len(modules) > 50, sorted(modules)
    for module, path in modules.items():
        for line, target in _imports(path):
            where = f"{path.relative_to(REPO)}:{line}: {module} imports {target}"
            problems += [f"{where} ({why})" for why in _problems(module, target)]
    assert not problems, "\n".join(problems)


def test_the_direction_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from edge_har.convert.pipeline import run_convert\n")
    assert _imports(bad) == [(2, "edge_har.convert.pipeline")]
    assert _layer("edge_har.convert.pipeline") > _layer("edge_har.device.daemon") > _layer("edge_har.core.bundle")
    assert _layer("edge_har.convert.pipeline") > _layer("edge_har.web.app") > _layer("edge_har.device.runtime")


def test_convert_imports_the_core_and_mqtt_never_the_device():
    """What the workstation and the device both run (encoders, video models) lives in the core."""
    for target in ("edge_har.device", "edge_har.device.video_runtime", "edge_har.device.runtime_api"):
        assert any("never the device" in why for why in _problems("edge_har.convert.pose_pipeline", target)), target
    for target in ("edge_har.core.video_models", "edge_har.core.pose_encoder", "edge_har.mqtt.client"):
        assert _problems("edge_har.convert.pose_pipeline", target) == [], target
    assert _problems("edge_har.benchmarks.video", "edge_har.device.video_runtime") == []
    assert not _in("edge_har.device_names", "edge_har.device")  # a prefix of a name is not the package


STRAY = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported " + __name__)
raise SystemExit("the stray {name} in the working directory was imported")
"""


@pytest.fixture
def stray_cwd(tmp_path):
    """A working directory holding ``convert.py``, ``benchmarks/`` and ``demo.py`` that must never run."""
    marker = tmp_path / "stray-imported"
    (tmp_path / "convert.py").write_text(STRAY.format(marker=str(marker), name="convert.py"))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text(STRAY.format(marker=str(marker), name="benchmarks/"))
    for name in ("demo.py", "core.py", "device.py", "cli.py"):
        (tmp_path / name).write_text(STRAY.format(marker=str(marker), name=name))
    return tmp_path, marker


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("argv", [[str(BIN / "edge-har"), "--help"], [sys.executable, "-m", "edge_har", "--help"]])
def test_help_lists_every_subcommand_beside_a_stray_convert_py(stray_cwd, argv):
    cwd, marker = stray_cwd
    result = _run(argv, cwd)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), marker.read_text()
    for sub in SUBCOMMANDS:
        assert f"    {sub.name} " in result.stdout, sub.name


def _replay_config(cwd: Path, bundle: Path, data: Path, port: int) -> Path:
    cfg = cwd / "config.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        device_id: stray-test
        bundle: {bundle}
        source: {{type: replay, path: {data}, realtime: false, stop_at_end: true}}
        mqtt: {{host: 127.0.0.1, port: {port}}}
        """)
    )
    return cfg


def test_the_daemon_ignores_a_stray_convert_py_as_systemd_starts_it(
    stray_cwd, tiny_bundle, tiny_dataset_dir, mosquitto_broker
):
    """``ExecStart=.../edge-har run --config ...`` and ``python -m edge_har run``, from a folder of strays."""
    cwd, marker = stray_cwd
    cfg = _replay_config(cwd, tiny_bundle, tiny_dataset_dir, mosquitto_broker.port)
    unit = (REPO / "firmware_configs" / "edge-har.service").read_text()
    assert "ExecStart=/opt/edge-har/venv/bin/edge-har run --config" in unit
    for argv in (
        [str(BIN / "edge-har"), "run", "--config", str(cfg), "--max-windows", "3"],
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg), "--max-windows", "3"],
    ):
        result = _run(argv, cwd)
        assert result.returncode == 0, result.stderr[-2000:]
        assert not marker.exists(), marker.read_text()


def _imported_after(argv: list[str]) -> set[str]:
    code = (
        "import sys\nfrom edge_har.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('edge_har'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.strip().splitlines()[-1].split())


def test_help_imports_no_subcommand_module():
    loaded = _imported_after(["--help"])
    assert not {
        m
        for m in loaded
        if m.startswith(("edge_har.convert", "edge_har.benchmarks", "edge_har.device", "edge_har.web"))
    }, loaded


def test_a_subcommand_imports_only_its_own_module():
    loaded = _imported_after(["validate-config", "--help"])
    assert "edge_har.device.daemon_cli" in loaded
    assert not {m for m in loaded if m.startswith(("edge_har.convert", "edge_har.benchmarks"))}, loaded
    assert "edge_har.subscribe" not in loaded and "edge_har.demo" not in loaded


def test_a_missing_extra_is_named_when_the_subcommand_runs(tmp_path):
    """Every interpreter hidden: ``run`` still shows in --help, and running it names the device extra."""
    hide = "import sys\nfor m in ('ai_edge_litert', 'tflite_runtime', 'tensorflow'): sys.modules[m] = None\n"
    code = hide + "from edge_har.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    shown = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "    run " in shown.stdout
    result = subprocess.run(
        [sys.executable, "-c", code, "run", "--config", str(tmp_path / "c.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "needs a TFLite interpreter" in result.stderr and "pip install 'edge-har[device]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_error_class_shares_one_base():
    from edge_har.core.errors import EdgeHarError

    missing = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                bases = {ast.unparse(b) for b in node.bases}
                if node.name != "EdgeHarError" and not bases & {"EdgeHarError", "CommandError"}:
                    mod = __import__(module, fromlist=[node.name])
                    if not issubclass(getattr(mod, node.name), EdgeHarError):
                        missing.append(f"{module}.{node.name}")
    assert not missing, missing
