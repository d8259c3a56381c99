"""The README's Grafana and Home Assistant examples work against the real API and the real schema.

The blocks are read out of README.md itself, so the documentation cannot drift: the Grafana queries run
on a PostgreSQL store written through :class:`~edge_har.web.store.Store` (Grafana's macros replaced by
what Grafana expands them to), and the Home Assistant YAML is parsed and its templates rendered with
Jinja against the replies of the real app.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi")
yaml = pytest.importorskip("yaml")
jinja2 = pytest.importorskip("jinja2")

import sqlalchemy as sa  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.store import open_store_url  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n### {title}\n")
    end = min(i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if i > 0)
    return text[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def rows(device: str, start: float, n: int, label: str, run_id: str = "r1", step: float = 1.0) -> list[dict]:
    now = time.time()
    return [
        {
            "device_id": device,
            "run_id": run_id,
            "seq": i,
            "ts": start + i * step,
            "label": label,
            "confidence": 0.5 + i / (2 * n),
            "probabilities": {label: 0.9},
            "model_id": "m",
            "variant": None,
            "inference_ms": 1.0,
            "received_at": now - 30 + i * 0.1,
        }
        for i in range(n)
    ]


def test_the_grafana_queries_run_on_the_postgresql_schema(postgres_url):
    from edge_har.web.store import metadata

    engine = sa.create_engine(postgres_url)
    metadata.drop_all(engine)  # the session's database, emptied as the db_url fixture does
    engine.dispose()
    text = section("Grafana on the PostgreSQL store")
    (source,) = (yaml.safe_load(b) for b in blocks(text, "yaml"))
    (ds,) = source["datasources"]
    assert ds["type"] in ("grafana-postgresql-datasource", "postgres") and ds["jsonData"]["database"]
    day, confidence, per_minute = blocks(text, "sql")

    store = open_store_url(postgres_url)
    noon = (time.time() // 86400 - 2) * 86400 + 43200  # noon UTC two days ago: one calendar day
    store.add_predictions(rows("pi-1", noon, 61, "Walk") + rows("pi-1", noon + 100, 31, "Sit", run_id="r2", step=2.0))
    store.add_predictions(rows("pi-2", noon, 10, "Walk"))
    store.close()

    def run(sql: str) -> list[Any]:
        expanded = re.sub(r"\$__unixEpochFilter\((\w+)\)", r"\1 BETWEEN 0 AND 1e11", sql).replace("$device", "pi-1")
        expanded = expanded.replace("$__unixEpochFrom()", "0").replace("$__unixEpochTo()", "1e11")
        assert "$" not in expanded, expanded
        eng = sa.create_engine(postgres_url)
        try:
            with eng.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(expanded))]
        finally:
            eng.dispose()

    minutes = {label: value for _t, label, value in run(day)}
    # the last of each run lasts the gap before it, as serve counts it
    assert minutes == pytest.approx({"Walk": 61 / 60.0, "Sit": 31 * 2 / 60.0})
    store = open_store_url(postgres_url)
    try:
        assert store.summary("pi-1", noon - 3600, noon + 3600) == pytest.approx({k: v * 60 for k, v in minutes.items()})
    finally:
        store.close()
    points = run(confidence)
    assert len(points) == 92 and {label for _t, label, _c in points} == {"Walk", "Sit"}
    counts: dict[str, int] = {}
    for _t, device, n in run(per_minute):
        counts[device] = counts.get(device, 0) + n
    assert counts == {"pi-1": 92, "pi-2": 10}


class _HomeAssistantLoader(yaml.SafeLoader):
    """YAML as Home Assistant reads it: ``!secret name`` is a value from secrets.yaml."""


_HomeAssistantLoader.add_constructor("!secret", lambda loader, node: f"<secret {loader.construct_scalar(node)}>")


def test_the_home_assistant_block_parses_and_its_templates_render_on_the_real_replies(tmp_path):
    (config,) = (
        yaml.load(b, Loader=_HomeAssistantLoader) for b in blocks(section("Home Assistant REST sensor"), "yaml")
    )
    device_rest, health_rest = config["rest"]
    device_id = urlparse(device_rest["resource"]).path.rsplit("/", 1)[1]
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    store = open_store_url(url)
    store.add_predictions(rows(device_id, time.time() - 20, 11, "Walk"))
    store.set_status(device_id, "online", time.time())
    store.close()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    with TestClient(create_app(ServeConfig(db_url=url, host="0.0.0.0", password="pw"))) as client:
        assert device_rest["authentication"] == "basic" and device_rest["password"].startswith("<secret")
        reply = client.get(urlparse(device_rest["resource"]).path, auth=("homeassistant", "pw"))
        assert reply.status_code == 200, reply.text
        value_json = reply.json()
        activity, liveness = device_rest["sensor"]
        assert env.from_string(activity["value_template"]).render(value_json=value_json) == "Walk"
        assert activity["json_attributes_path"] == "$.current"
        assert set(activity["json_attributes"]) <= set(value_json["current"])
        assert env.from_string(liveness["value_template"]).render(value_json=value_json) == "online"

        health = client.get(urlparse(health_rest["resource"]).path)  # no credentials
        assert health.status_code == 200
        (binary,) = health_rest["binary_sensor"]
        assert binary["device_class"] == "connectivity"
        assert env.from_string(binary["value_template"]).render(value_json=health.json()) == "True"

        quiet = dict(value_json, current=None)
        assert env.from_string(activity["value_template"]).render(value_json=quiet) == "unknown"
