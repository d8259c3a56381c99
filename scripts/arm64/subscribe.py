"""Host-side subscriber of ``scripts/arm64_check.sh``: did the emulated daemon's predictions arrive?

    python subscribe.py --port P --device-id ID --ready FILE --out FILE [--timeout S]

Subscribes to ``edge-har/<ID>/#`` on 127.0.0.1 (paho, the host's own venv), touches ``--ready``
once the subscription is granted, and ends when the daemon's retained status turns ``stopped``
after at least one prediction of this run (or at ``--timeout``). Writes a JSON summary to
``--out``: predictions received, their labels, variant and model id, the last status. Exit 0
when at least one prediction arrived and the daemon said ``stopped``, else 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", type=str, default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", type=str, default="edge-har")
    p.add_argument("--device-id", type=str, required=True)
    p.add_argument("--ready", type=Path, required=True, help="touched once subscribed")
    p.add_argument("--out", type=Path, required=True, help="the JSON summary")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)")
    args = p.parse_args(argv)

    done = threading.Event()
    state: dict[str, Any] = {"predictions": 0, "labels": Counter(), "variants": set(), "models": set(), "status": []}
    base = f"{args.prefix}/{args.device_id}"

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if reason.is_failure:
            print(f"subscribe: broker refused: {reason}", file=sys.stderr)
            done.set()
            return
        client.subscribe(f"{base}/#", qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _codes: Any, _p: Any = None) -> None:
        args.ready.touch()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == f"{base}/prediction":
            payload = json.loads(msg.payload)
            state["predictions"] += 1
            state["labels"][payload["label"]] += 1
            state["variants"].add(payload["variant"])
            state["models"].add(payload["model_id"])
        elif msg.topic == f"{base}/status":
            text = msg.payload.decode("utf-8", "replace")
            # a retained status from an earlier run arrives first, flagged retain: only a live one counts
            state["status"].append(text if not msg.retain else f"{text} (retained)")
            if text == "stopped" and not msg.retain and state["predictions"]:
                done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"arm64-check-{time.time_ns()}")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port)
    client.loop_start()
    finished = done.wait(args.timeout)
    client.loop_stop()
    client.disconnect()
    summary = {
        "predictions": state["predictions"],
        "labels": dict(state["labels"]),
        "variants": sorted(state["variants"]),
        "model_ids": sorted(state["models"]),
        "status": state["status"],
        "stopped": finished,
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"subscribe: {summary['predictions']} predictions {summary['labels']}, status {summary['status']}")
    return 0 if finished and summary["predictions"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
