"""The edge daemon: a sensor source through the bundle, predictions out over MQTT, for months.

Threads, and what each owns::

    source thread      source.read() -> Windowing (StreamPreprocessor) -> bounded window queue
    main thread        window queue -> Runtime.predict -> Publisher.publish_prediction
    stats thread       every mqtt.stats_interval_s: Publisher.publish_stats + one log line
    paho threads       owned by the Publisher (and by the MQTT input source)

One ``threading.Event`` stops them all. SIGTERM (systemd), SIGINT (Ctrl-C) and SIGHUP only set
it; the shutdown order is then: stop the source; infer the windows already queued (bounded by
``DRAIN_TIMEOUT_S``); publish a last stats message; ``Publisher.stop`` sends what the broker
can still take, publishes the retained ``stopped`` and disconnects; exit 0. The retained
``offline`` is only the Last Will (a crash, a SIGKILL, power or network lost), so a consumer
can tell a device that was stopped from one that died (see :mod:`edge_har.mqtt.liveness`).

What never stops the daemon: malformed samples (dropped, counted by reason in stats), a lost
serial port or IMU (the source reopens it with backoff), a broker that is down at start or
goes away (predictions wait in the publisher's bounded queue), a full window queue (the oldest
window is dropped and counted, so predictions stay current; a non-realtime replay waits
instead so benchmarks infer every window). A replay that reaches its end without ``loop``
leaves the daemon running (status stays ``online``, stats keep coming, so a dashboard sees a
live device with an idle source) unless ``source.stop_at_end`` is set: then it drains,
publishes ``stopped`` and exits 0.

SIGHUP (``systemctl reload``, a closed terminal) is a *restart*, not an in-process reload: the
same clean stop (drain, last stats, retained ``stopped``, disconnect), then exit status 75
(``EXIT_RESTART``, EX_TEMPFAIL), which the systemd unit restarts at once
(``RestartForceExitStatus=75``) without marking the unit failed (``SuccessExitStatus=75``; it
still counts toward ``StartLimitBurst``, 10 starts an hour). The
new process reads the config and the bundle afresh and publishes ``online`` with a new run id.
A clean restart was chosen over reloading in place because a changed config can change
anything (bundle, broker, source, queues): starting over is the one path that is already tested
for all of them, and it costs a second or two of downtime.

A stop signal during start-up means the same: ``edge-har run`` installs handlers that only note
it (:mod:`edge_har.device.early_signals`) before it imports the runtime or reads the config, and
the daemon acts on what they noted; stopped before anything was connected (imports, config,
model load), it exits at once with the same status (75 after SIGHUP, 0 after SIGTERM/SIGINT).

Exit status: 0 after a clean stop; 75 after a SIGHUP's clean stop (restart me); 78 (EX_CONFIG) when the config, bundle or runtime cannot
work, which the systemd unit excludes from restarts (RestartPreventExitStatus=78); 1 when
inference keeps failing (systemd restarts the service). A source that ends having delivered
nothing at all (a video file OpenCV cannot decode, an empty replay) also exits 78 after the clean
stop, with or without ``stop_at_end``: staying ``online`` with nothing to read hid it, and a
restart reads the same file again.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from edge_har.device.config import ConfigError, LoadedConfig
from edge_har.device.runtime_api import Prediction, StreamRuntime, Window, WindowStage
from edge_har.device.sources import Source, SourceError, make_source
from edge_har.device.stats import DaemonStats, rss_mb

log = logging.getLogger("edge_har.daemon")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG
EXIT_RESTART = 75  # sysexits.h EX_TEMPFAIL: stopped cleanly on SIGHUP, to be started again (see the docstring)

READ_TIMEOUT_S = 0.2  # how long the source thread may block before it looks at the stop event
DRAIN_TIMEOUT_S = 5.0  # at most this long inferring queued windows after a stop
MAX_FAILURES_IN_A_ROW = 50  # inference errors in a row before giving up (systemd restarts us)


class Daemon:
    """One run of the daemon for one config. ``run()`` returns the exit status."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        max_windows: Optional[int] = None,
        duration_s: Optional[float] = None,
        summary_json: Optional[Path] = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.device_id = self.cfg.effective_device_id()
        self.max_windows = max_windows
        self.duration_s = duration_s
        self.summary_json = summary_json
        self.install_signal_handlers = install_signal_handlers
        self.stop_event = threading.Event()
        self.stats = DaemonStats()
        self.stop_reason = ""
        self.restart_requested = False  # SIGHUP: exit EXIT_RESTART after the clean stop
        self.nothing_read = False  # the source ended without delivering anything: exit EXIT_CONFIG
        self.runtime: Optional[StreamRuntime] = None
        self._variant_choice: Any = None  # a VariantChoice until the first stats message carried it
        self._model_label: Optional[Callable[[str], Optional[str]]] = None
        self.source: Optional[Source] = None
        self.publisher: Any = None
        self.events: Any = None  # an EventStage when the bundle or the config declares event classes
        self.capture: Any = None  # a CaptureStore when the config has a capture section (sensor bundles)
        self._corrections: Any = None  # its CorrectionListener
        self.windows: queue.Queue[Window] = queue.Queue(maxsize=self.cfg.queues.windows)
        self._source_thread: Optional[threading.Thread] = None
        self._stats_thread: Optional[threading.Thread] = None
        self._source_done = threading.Event()  # the source will deliver nothing more
        self._started = False  # _setup got as far as starting the threads: run the loop, then shut down
        self._lossless = self.cfg.source.lossless()  # the source's plugin says whether it can wait for us
        self.windowing: Optional[WindowStage] = None
        self.updates: Any = None  # an UpdateStage when the config has an update section

    # ================================================================ control

    def request_stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            self.stop_reason = reason
            log.info("stopping: %s", reason)
            self.stop_event.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            self.restart_requested = True  # also when already stopping: exit so that it is started again
        if self.stop_event.is_set():
            log.info("%s received again; already stopping", name)
            return
        if signum == signal.SIGHUP:
            self.request_stop(f"{name} received: clean stop, then exit {EXIT_RESTART} to be restarted")
        else:
            self.request_stop(f"{name} received")

    # ================================================================ run

    def run(self) -> int:
        from edge_har.device import early_signals

        previous = {}
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in early_signals.STOP_SIGNALS:
                previous[sig] = signal.signal(sig, self._on_signal)
            # what arrived while `edge-har run` imported the runtime and read the config
            for signum in early_signals.take():
                self._on_signal(signum, None)
        try:
            if self.stop_event.is_set():
                return self._stopped_before_start()
            code = self._setup()
            if code != EXIT_OK or not self._started:
                return code
            code = self._loop()
            self._shutdown()
            if code == EXIT_OK and self.nothing_read:
                return EXIT_CONFIG
            if code == EXIT_OK and self.restart_requested:
                log.info("exiting with status %d so the service manager starts the daemon again", EXIT_RESTART)
                return EXIT_RESTART
            return code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _setup(self) -> int:
        from edge_har.device.startup import run_startup_checks
        from edge_har.mqtt.config import MqttConfigError
        from edge_har.mqtt.publisher import Publisher

        cfg = self.cfg
        loaded = self.loaded
        if cfg.update is not None:  # the current bundle under update.dir, when an update made one
            from edge_har.device.update_stage import UpdateStage

            self.updates = UpdateStage(cfg)
            loaded = self.updates.begin(loaded)
        # The same checks as `edge-har validate-config` (files, bundle.json, every model loaded and
        # checked against bundle, labels and source): a problem here exits 78, never restarted.
        # A video bundle (camera source) streams frames through encoder + head; the same Prediction comes out.
        checked = run_startup_checks(loaded)
        for line in checked.warnings:
            log.warning("config: %s", line)
        if checked.runtime is None:
            for line in checked.errors:
                log.error("config: %s", line)
            if self.updates is not None and self.updates.start_refused(checked.errors):
                log.error("update: the new bundle was refused at start; restarting into the one before")
                return EXIT_RESTART
            return EXIT_CONFIG
        self.runtime = rt = checked.runtime
        if self.stop_event.is_set():  # stopped while the model loaded: nothing to connect or drain
            return self._stopped_before_start()
        # variant auto's choice (figures, CPU, cached or measured) goes into the first stats
        # message only: it does not change while the daemon runs. The video runtime has none.
        self._variant_choice = getattr(rt, "variant_choice", None)
        # a replay's truth is the data set's class name; a bundle trained with --label-map predicts
        # the merged names, so the truth goes through the same map (None: a class the model left out)
        bundle = getattr(rt, "bundle", None)
        self._model_label = bundle.model_label if bundle is not None else None
        from edge_har.core.events import EventRuleError
        from edge_har.device.event_stage import EventStage, event_rules

        try:
            rules = event_rules(cfg.events, bundle.data.get("events") if bundle is not None else None, rt.labels)
        except EventRuleError as exc:
            log.error("config: %s", exc)
            return EXIT_CONFIG
        self.events = EventStage(rules, rt.labels, getattr(rt, "pre", None)) if rules else None
        try:
            self.publisher = Publisher(
                cfg.mqtt, self.device_id, rt.model_id, rt.labels, event_types=[r.label for r in rules]
            )
            self.publisher.start()
        except (MqttConfigError, ValueError) as exc:
            log.error("config: %s", exc)
            return EXIT_CONFIG
        try:
            # a replay's set, read by the checks above, is replayed as read (not read a second time)
            self.source = make_source(
                cfg, rt.pre.n_channels, rt.pre.sample_rate_hz, self.publisher.client_id, checked.source_data
            )
            self.source.start()
            windowing = self._windowing(self.source)
        except (SourceError, ValueError) as exc:
            log.error("source: %s", exc)
            self.publisher.stop(timeout=2.0)
            return EXIT_CONFIG
        self.windowing = windowing
        if cfg.capture is not None:
            self._start_capture(windowing)
        if self.updates is not None:
            self.updates.start(self)
        log.info(
            "edge-har daemon up: device %s, model %s/%s, source %s (%s Hz), %d windows queue%s",
            self.device_id,
            rt.model_id,
            rt.variant,
            self.source.name,
            f"{windowing.source_rate_hz:g}",
            cfg.queues.windows,
            " (lossless replay)" if self._lossless else "",
        )
        self._source_thread = threading.Thread(
            target=self._source_loop, args=(windowing,), name="edge-har-source", daemon=True
        )
        self._stats_thread = threading.Thread(target=self._stats_loop, name="edge-har-stats", daemon=True)
        self._source_thread.start()
        self._stats_thread.start()
        self._started = True
        return EXIT_OK

    def _start_capture(self, windowing: WindowStage) -> None:
        """The capture store and its correction listener (check_files refused the section for video)."""
        from edge_har.device.capture import CaptureStore, CorrectionListener, stream_info

        assert self.cfg.capture is not None and self.runtime is not None and self.source is not None
        info = stream_info(self.device_id, self.runtime, windowing, self.cfg.source.type, self.cfg.queues.windows)
        self.capture = CaptureStore(self.cfg.capture, info)
        self.capture.start()
        self._corrections = CorrectionListener(
            self.cfg.mqtt, self.device_id, f"{self.publisher.client_id}-capture", self.capture
        )
        self._corrections.start()

    def _stopped_before_start(self) -> int:
        """A stop signal before anything was connected or started: exit at once with the code the
        same signal gives later (75 after SIGHUP, so the service manager starts the daemon again)."""
        code = EXIT_RESTART if self.restart_requested else EXIT_OK
        log.info("stopped during start-up (%s), before connecting: exit status %d", self.stop_reason, code)
        return code

    def _windowing(self, source: Source) -> WindowStage:
        assert self.runtime is not None
        scfg = self.cfg.source
        scale, offset = scfg.value_scaling()  # (None, None) for a camera
        if scale is None and offset is None and source.delivers_physical_units:
            scale, offset = [1.0], [0.0]
            log.info(
                "source delivers physical units: value scaling set to scale 1, offset 0 (the bundle's is %s / %s %s)",
                list(self.runtime.pre.scale),
                list(self.runtime.pre.offset),
                self.runtime.pre.units,
            )
        return self.runtime.windowing(source.rate_hz, scale, offset)

    # ================================================================ source thread

    def _source_loop(self, windowing: WindowStage) -> None:
        source = self.source
        assert source is not None
        errors_in_a_row = 0
        try:
            while not self.stop_event.is_set():
                try:
                    chunk = source.read(READ_TIMEOUT_S)
                    errors_in_a_row = 0
                except Exception:
                    # A source bug or an odd device error must not end the stream: log, back off, go on.
                    errors_in_a_row += 1
                    delay = min(30.0, 0.5 * 2 ** min(errors_in_a_row, 6))
                    log.exception(
                        "source %s: read failed (%d in a row); retrying in %.1f s", source.name, errors_in_a_row, delay
                    )
                    self.stop_event.wait(delay)
                    continue
                if chunk is None:
                    if source.finished:
                        self._source_finished()
                        return
                    continue
                if self.capture is not None:
                    self.capture.feed(chunk)  # the raw samples, before windowing scales them
                for window in windowing.push(chunk):
                    self._enqueue(window)
        finally:
            try:
                source.stop()
            except Exception:
                log.exception("source %s: stop failed", source.name)
            self._source_done.set()

    def _source_finished(self) -> None:
        source = self.source
        if source is not None and source.samples_read == 0:
            self.nothing_read = True
            why = source.status().get("last_error") or "it delivered no data"
            log.error("source %s ended without delivering anything (%s); exiting %d", source.name, why, EXIT_CONFIG)
            self.request_stop(f"source ended with nothing read: {why}")
        elif self.cfg.source.stops_at_end():
            log.info("source finished; source.stop_at_end is set: stopping after the queued windows")
        else:
            log.info("source finished; staying up (status online, stats continue) until stopped")

    def _enqueue(self, window: Window) -> None:
        if self._lossless:
            while not self.stop_event.is_set():
                try:
                    self.windows.put(window, timeout=READ_TIMEOUT_S)
                    return
                except queue.Full:
                    continue
            return
        try:
            self.windows.put_nowait(window)
        except queue.Full:
            try:
                self.windows.get_nowait()
                self.stats.window_dropped()
                if self.stats.windows_dropped == 1 or self.stats.windows_dropped % 1000 == 0:
                    log.warning(
                        "inference is behind the source: dropped the oldest queued window (%d so far; queues.windows=%d)",
                        self.stats.windows_dropped,
                        self.cfg.queues.windows,
                    )
            except queue.Empty:
                pass
            try:
                self.windows.put_nowait(window)
            except queue.Full:
                self.stats.window_dropped()

    # ================================================================ inference (main thread)

    def _loop(self) -> int:
        rt = self.runtime
        assert rt is not None
        started = time.monotonic()
        failures = 0
        drain_deadline: Optional[float] = None
        stop_at_end = self.cfg.source.stops_at_end()
        while True:
            if self.stop_event.is_set():
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + DRAIN_TIMEOUT_S
                if self._source_done.is_set() and self.windows.empty():
                    break
                if time.monotonic() > drain_deadline:
                    log.warning(
                        "stop: %d queued window(s) left uninferred after %g s", self.windows.qsize(), DRAIN_TIMEOUT_S
                    )
                    break
            elif self.duration_s is not None and time.monotonic() - started >= self.duration_s:
                self.request_stop(f"--duration {self.duration_s:g} s reached")
                continue
            elif stop_at_end and self._source_done.is_set() and self.windows.empty():
                self.request_stop("end of the replay (source.stop_at_end)")
                continue
            try:
                window = self.windows.get(timeout=READ_TIMEOUT_S)
            except queue.Empty:
                continue
            if self.updates is not None:  # a window made after an update's swap runs on the new runtime
                rt = self.updates.on_window(window, rt)
            try:
                prediction = rt.predict(window)
                self._publish(prediction)
                failures = 0
                if self.updates is not None:
                    self.updates.after_prediction()
            except Exception:
                failures += 1
                log.exception("inference failed (%d in a row)", failures)
                if failures >= MAX_FAILURES_IN_A_ROW:
                    log.error(
                        "inference failed %d times in a row; exiting so the service manager restarts it", failures
                    )
                    self.request_stop("inference keeps failing")
                    return EXIT_FAILURE
                continue
            if self.events is not None:
                self._publish_events(window, prediction)
            if self.capture is not None:
                try:
                    self.capture.offer(prediction, window)
                except Exception:  # capture must never stop inference
                    log.exception("capture: offering a window failed")
            if self.max_windows is not None and self.stats.windows_total >= self.max_windows:
                self.request_stop(f"--max-windows {self.max_windows} reached")
                break
        return EXIT_OK

    def switch_windowing(self, pre: Any, generation: int) -> None:
        """Windows made from the source's next chunk on use ``pre``'s normalisation (an update's swap)."""
        switch = getattr(self.windowing, "switch", None)
        if switch is None:
            raise RuntimeError("this source's windowing cannot switch models between two windows")
        switch(pre, generation)

    def _publish_events(self, window: Window, prediction: Prediction) -> None:
        from edge_har.mqtt.payloads import event_payload

        rt, events = self.runtime, self.events
        assert rt is not None and events is not None
        try:
            for event in events.on_window(window, prediction):
                payload = event_payload(
                    device_id=self.device_id,
                    model_id=rt.model_id,
                    event=event.to_json(),
                    variant=rt.variant,
                    run_id=self.publisher.run_id,
                )
                self.publisher.publish_event(payload)
        except Exception:  # an event that cannot be built must never stop inference
            log.exception("events: a window could not be checked")

    def _publish(self, p: Prediction) -> None:
        from edge_har.mqtt.payloads import prediction_payload

        rt = self.runtime
        assert rt is not None
        extra: dict[str, Any] = {}
        truth = self._model_label(p.truth) if p.truth and self._model_label is not None else p.truth
        if truth:
            extra["truth"] = truth
        if rt.smoother.window > 1:
            extra["raw_label"] = p.raw_label
        extra.update(getattr(p, "extra", None) or {})  # a runtime's additions (a pose window's keypoints)
        p.stamp_e2e()
        payload = prediction_payload(
            device_id=self.device_id,
            model_id=rt.model_id,
            seq=p.seq,
            window_end_ts=p.window_end_ts,
            label=p.label,
            confidence=p.confidence,
            probabilities=p.probabilities,
            inference_ms=p.inference_ms,
            e2e_ms=p.e2e_ms,
            variant=rt.variant,
            extra=extra or None,
            run_id=self.publisher.run_id,
        )
        self.publisher.publish_prediction(payload)
        first = self.stats.windows_total == 0
        self.stats.prediction(p.inference_ms, p.e2e_ms, p.label, p.raw_label, truth)
        if first:
            log.info(
                "first prediction: %s (%.2f) after %.2f s (%.2f s since process start); inference %.2f ms, e2e %.2f ms",
                p.label,
                p.confidence,
                self.stats.uptime_s(),
                _since_process_start(),
                p.inference_ms,
                p.e2e_ms,
            )
        log.debug(
            "prediction %d: %s %.3f (raw %s) inference %.2f ms e2e %.2f ms",
            p.seq,
            p.label,
            p.confidence,
            p.raw_label,
            p.inference_ms,
            p.e2e_ms,
        )

    # ================================================================ stats

    def _stats_loop(self) -> None:
        interval = self.cfg.mqtt.stats_interval_s
        while not self.stop_event.wait(interval):
            try:
                self.publish_stats()
            except Exception:
                log.exception("stats: could not publish")

    def stats_payload(self) -> dict[str, Any]:
        from edge_har.mqtt.payloads import stats_payload

        rt, source = self.runtime, self.source
        assert rt is not None and source is not None
        interval = self.stats.take_interval()
        dropped = source.malformed.counts()
        extra: dict[str, Any] = {
            "variant": rt.variant,
            "windows_dropped": self.stats.windows_dropped,
            "source": source.status(),
        }
        if self._variant_choice is not None:  # until a stats message carrying it reached the broker
            extra["variant_choice"] = self._variant_choice.to_json()
        counters = rt.counters()
        if counters:  # video: frames in, kept at the model's rate, mean encoder time (a sensor runtime has none)
            extra["frames"] = counters
        accuracy = self.stats.accuracy()
        if accuracy:
            extra["replay_accuracy"] = accuracy
        if self.capture is not None:
            extra["captures"] = self.capture.counters()
        if self.events is not None:
            extra["events"] = self.events.counters()
        return stats_payload(
            device_id=self.device_id,
            model_id=rt.model_id,
            uptime_s=self.stats.uptime_s(),
            windows_total=self.stats.windows_total,
            windows_per_s=interval["windows_per_s"],
            inference_ms=interval["inference_ms"],
            e2e_ms=interval["e2e_ms"],
            samples_total=source.samples_read + sum(dropped.values()),
            samples_dropped=dropped,
            queue_depth=self.windows.qsize(),
            rss_mb=rss_mb(),
            mqtt=self.publisher.counters(),
            extra=extra,
            run_id=self.publisher.run_id,
            stats_interval_s=self.cfg.mqtt.stats_interval_s,
        )

    def publish_stats(self) -> dict[str, Any]:
        payload = self.stats_payload()
        if self.publisher.publish_stats(payload) and "variant_choice" in payload.get("extra", {}):
            self._variant_choice = None  # published once
        inf, e2e, m = payload.get("inference_ms") or {}, payload.get("e2e_ms") or {}, payload["mqtt"]
        log.info(
            "stats: %.1f windows/s, inference p50 %s p99 %s ms, e2e p50 %s p99 %s ms, %d windows, dropped samples %s, "
            "dropped windows %d, queue %d, rss %s MiB, mqtt %s (queued %d, dropped %d)",
            payload["windows_per_s"],
            inf.get("p50"),
            inf.get("p99"),
            e2e.get("p50"),
            e2e.get("p99"),
            payload["windows_total"],
            payload["samples_dropped"] or 0,
            payload["extra"]["windows_dropped"],
            payload["queue_depth"],
            payload["rss_mb"],
            "up" if m.get("connected") else "DOWN",
            m.get("queued", 0),
            m.get("dropped_offline", 0),
        )
        return payload

    # ================================================================ shutdown

    def _shutdown(self) -> None:
        self.stop_event.set()
        if self._source_thread is not None:
            self._source_thread.join(timeout=5.0)
            if self._source_thread.is_alive():
                log.warning("the source thread did not stop within 5 s; leaving it to exit with the process")
        if self._stats_thread is not None:
            self._stats_thread.join(timeout=2.0)
        if self._corrections is not None:
            self._corrections.stop()
        if self.updates is not None:
            self.updates.stop()
        if self.capture is not None:
            self.capture.close(timeout=5.0)
        try:
            self.publish_stats()
        except Exception:
            log.exception("stats: could not publish the final stats")
        self.publisher.stop(timeout=5.0)
        summary = self.stats.run_summary()
        summary["accuracy"] = self.stats.accuracy()
        summary["stop_reason"] = self.stop_reason
        summary["run_id"] = getattr(self.publisher, "run_id", None)
        summary["samples_dropped"] = self.source.malformed.counts() if self.source else {}
        # The publisher's final counters, after its last flush: windows_total == published +
        # dropped_offline + queued + inflight (queued/inflight: never delivered, the broker was gone).
        summary["mqtt"] = self.publisher.counters()
        if self.capture is not None:
            summary["captures"] = self.capture.counters()
        counters = self.runtime.counters() if self.runtime is not None else {}
        if counters:  # video: the stats' frames section at the end (frames kept, windows_no_person, no_person_s)
            summary["frames"] = counters
        inf, e2e = summary["inference_ms"] or {}, summary["e2e_ms"] or {}
        log.info(
            "stopped (%s): %d windows in %.1f s; inference p50 %.3f p99 %.3f ms; e2e p50 %.3f p99 %.3f ms%s",
            self.stop_reason or "no reason",
            summary["windows_total"],
            summary["uptime_s"],
            inf.get("p50", float("nan")),
            inf.get("p99", float("nan")),
            e2e.get("p50", float("nan")),
            e2e.get("p99", float("nan")),
            f"; replay accuracy raw {summary['accuracy']['raw']:.3f}, smoothed {summary['accuracy']['smoothed']:.3f}"
            if summary["accuracy"]
            else "",
        )
        if self.summary_json is not None:
            try:
                self.summary_json.parent.mkdir(parents=True, exist_ok=True)
                self.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
            except OSError as exc:
                log.error("cannot write --summary-json %s: %s", self.summary_json, exc)


def _since_process_start() -> float:
    """Seconds since this process was started (exec), from /proc with 10 ms resolution.

    psutil's create_time adds the boot time rounded to whole seconds, too coarse for a cold start.
    """
    try:
        import os

        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5): starttime, counted after the ")" of comm
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_daemon(config_path: str | Path, **options: Any) -> int:
    """Load the config and run; the CLI's entry point (also usable from Python)."""
    from edge_har.device.config import load_config

    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        for line in exc.problems:
            log.error("config: %s", line)
        return EXIT_CONFIG
    _apply_log_level(loaded.config.logging.level)
    return Daemon(loaded, **options).run()


def _apply_log_level(level: str) -> None:
    """The config's level, unless ``edge-har --log-level`` chose one other than its default INFO."""
    root = logging.getLogger()
    if root.level in (logging.NOTSET, logging.INFO):
        root.setLevel(getattr(logging, level))
