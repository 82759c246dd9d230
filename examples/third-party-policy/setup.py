"""
An example third-party llmux policy package.

It depends on txllmux (llmux's distribution name); install llmux first, e.g.
C{pip install txllmux} or C{pip install /path/to/llmux}, then this package.
"""

from setuptools import find_packages, setup

setup(
    name="llmux-batching-policy",
    version="1.0.0",
    description="A 'batching' switch policy for llmux",
    python_requires=">=3.11",
    package_dir={"": "src"},
    # twisted/plugins must stay without __init__.py, so list it by hand.
    packages=find_packages("src") + ["twisted.plugins"],
    install_requires=["txllmux"],
)
