"""``edge-har serve``: a small web app for people (upload -> prediction, a live fleet view, history).

Runs on a workstation and on a Pi with the ``device`` and ``web`` extras; never imports TensorFlow.
"""
