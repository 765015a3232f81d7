from setuptools import find_packages, setup

setup(
    name="dpl-plugin",
    version="0.1.0",
    description="Differentiable Prompt Learning (per-layer prompt length search) for CoOp-family CLIP prompt learners",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["dpl_plugin", "dpl_plugin.*"]),
    package_data={"dpl_plugin": ["data/classnames/*.txt", "demo/weights/*"]},
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "openai-clip>=1.0.1",
        "setuptools<81",  # openai-clip imports pkg_resources, which setuptools 81 removed
        "pyyaml",
        "yacs",
        "gdown",
        "tqdm",
        "matplotlib",
    ],
    # openclip: OpenCLIP backbones. Not "open_clip": setuptools 80 records that as "open-clip", which
    # pip 23 does not match, and installs nothing.
    extras_require={"test": ["pytest"], "openclip": ["open_clip_torch>=3.3"]},
)
