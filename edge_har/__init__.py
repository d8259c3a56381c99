"""edge-har: human activity recognition from a workstation to a Raspberry Pi.

The device runtime lives in this package and must never import TensorFlow; the
workstation side (training, quantization, bundle writing) lives in ``convert``.
"""

__version__ = "0.1.0"
