"""Benchmark suites: latency, accuracy and end to end, the same on a workstation and on a Pi.

``edge-har bench latency|accuracy|e2e BUNDLE`` print a table, write every figure
to one JSON results file (with the machine, runtime versions, git commit and
date, so runs from different machines can be laid side by side) and draw PNG
plots. Nothing here imports TensorFlow unless a suite is asked to measure the
Keras model or the ``tf.lite`` runtime, so the suites run on a device that has
only ``pip install edge-har[device]``. See ``benchmarks/README.md``.
"""
