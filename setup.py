"""edge-har: human activity recognition from a workstation to a Raspberry Pi.

Extras decide which side of the project a machine gets:

* ``device``  - the runtime on the Pi: ai-edge-litert (numpy 2), paho-mqtt, OpenCV.
* ``tflite``  - the same runtime on tflite-runtime 2.14 (numpy<2, older Pi images, Coral).
* ``imu``     - I2C IMU support (smbus2) for the device.
* ``train``   - the workstation: TensorFlow, tf-keras, matplotlib, scikit-learn.
* ``bench``   - the benchmark suites' extras on a device: scikit-learn (random-forest baseline) and
  matplotlib (plots); both install from piwheels on a Pi.
* ``dev``     - tests and test tools.

``pip install .[device]`` never pulls TensorFlow.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
exec((HERE / "edge_har" / "__init__.py").read_text(), version)

CORE = [
    "numpy>=1.23",
    "paho-mqtt>=2.2,<3",  # 2.2: Client.drop_out_messages (edge_har.mqtt.publisher owns the offline queue)
    "psutil>=5.9",
    "tqdm>=4.60",
    "PyYAML>=6.0",
    "pydantic>=2.5,<3",
]
# pyserial: the serial source (a microcontroller on USB/UART); small and pure Python, so every device gets it.
DEVICE = ["ai-edge-litert>=1.2", "numpy>=1.26", "opencv-python-headless>=4.8", "pyserial>=3.5"]
TFLITE = ["tflite-runtime==2.14.0", "numpy>=1.23,<2", "opencv-python-headless>=4.8,<4.11", "pyserial>=3.5"]
IMU = ["smbus2>=0.4"]
TRAIN = [
    "tensorflow>=2.16,<2.22",
    "tf-keras>=2.16,<2.22",
    "matplotlib>=3.7",
    "scikit-learn>=1.3",
    "ai-edge-litert>=1.2",
    "opencv-python-headless>=4.8",
]
BENCH = ["scikit-learn>=1.3", "matplotlib>=3.7"]
DEV = ["pytest>=7.4", "pytest-timeout>=2.2", "cryptography>=41", "jinja2>=3.1"]  # cryptography: TLS test certificates

setup(
    name="edge-har",
    version=version["__version__"],
    description="Human activity recognition CNN-LSTMs from a workstation to a Raspberry Pi, reporting over MQTT",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["edge_har", "edge_har.*", "convert", "convert.*", "benchmarks", "benchmarks.*"]),
    package_data={"edge_har": ["py.typed"]},
    install_requires=CORE,
    extras_require={
        "device": DEVICE,
        "tflite": TFLITE,
        "imu": IMU,
        "train": TRAIN,
        "dev": DEV,
        "bench": BENCH,
        "all": sorted(set(DEVICE + IMU + TRAIN + BENCH + DEV)),
    },
    entry_points={"console_scripts": ["edge-har=edge_har.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Operating System :: POSIX :: Linux",
    ],
)
