"""rearec-tf: ReaRec latent reasoning for sequential recommendation in TensorFlow/Keras."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


# One consistent set: the full `tensorflow` package (tensorflow-serving-api, TFRS and
# tf-keras depend on it; never install tensorflow-cpu beside it), tf-keras of the same
# minor version for the Keras 2 API that TFRS 0.7.x needs.
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tf-keras>=2.21,<2.22",
    "tensorflow-recommenders>=0.7.7,<0.8",
    "tensorflow-datasets>=4.9.10,<5",
    "tensorflow-serving-api>=2.21,<2.22",
    "grpcio>=1.60,<2",
    "numpy>=1.26,<3",
    "pandas>=2.0,<4",
    "pyarrow>=14",
    "matplotlib>=3.7,<4",
]

setup(
    name="rearec-tf",
    version="0.1.0",
    description="ReaRec (latent multi-step reasoning for sequential recommendation) in "
                "TensorFlow/Keras with TFRS objectives and TF Serving export",
    long_description=read("README.md") if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rearec_tf", "rearec_tf.*", "serving", "serving.*",
                                    "pipelines", "pipelines.*"]),
    package_data={"serving": ["*.config", "*.txt"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3"],
        "beam": ["apache-beam>=2.60"],
    },
    entry_points={
        "console_scripts": [
            "rearec-train=rearec_tf.train:main",
            "rearec-evaluate=rearec_tf.evaluate:main",
            "rearec-export=rearec_tf.export:main",
        ]
    },
    license="Apache-2.0",
)
