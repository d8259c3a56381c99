"""edge-har workstation side: data sets, training, quantization and the model bundle.

Modules here may import TensorFlow, but only inside functions, so that
``edge-har --help`` and the device-side subcommands stay fast without it.
"""
