from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent


def read_requirements(name):
    lines = (here / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="rubert_tf",
    version="0.1.0",
    description="RuBERT (Russian BERT) for TensorFlow 2 and Keras 3",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rubert_tf", "rubert_tf.*"]),
    include_package_data=True,
    install_requires=read_requirements("requirements.txt"),
    extras_require={"test": read_requirements("requirements-test.txt")},
    entry_points={"console_scripts": ["rubert-tf=rubert_tf.cli:main"]},
)
