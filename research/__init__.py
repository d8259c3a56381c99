"""Research scripts of the repository, run from a checkout and not installed with edge-har.

Each one drives the product's own code (``edge_har.convert``, ``edge_har.benchmarks``) on a
workstation to answer one question, and its findings are kept in ``benchmarks/results/``:
``int8_study`` (which architecture and converter recipe make the int8 CNN-LSTM fast; it trains
dozens of models) and ``hapt`` (the published UCI HAR protocol on HAPT, through ``edge-har
convert`` and ``edge-har bench``). They train with TensorFlow for most of an hour, so they are
not ``edge-har bench`` suites, which measure one bundle and run on a device too. Run them as
``python research/<name>.py --help``.
"""
