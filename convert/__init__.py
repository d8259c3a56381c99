"""edge-har's workstation side: data sets to a quantized TFLite model bundle.

One module per step: ``datasets`` (loaders and training windows) and ``splits``
(train/validation/test by recording or subject), ``models`` (the CNN-LSTM),
``train``, ``quantize``, ``evaluate`` and ``export`` (the bundle), tied together
by ``pipeline`` and exposed as ``edge-har convert`` / ``edge-har evaluate`` by ``cli``.

Only ``models``, ``train`` and ``quantize`` need TensorFlow, and they import it
lazily: loading data, splitting and evaluating a bundle run with the device
extra alone. The package imports nothing here, so ``import convert`` stays cheap.
"""
