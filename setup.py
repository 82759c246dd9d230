"""
Packaging for llmux, distributed as C{txllmux}.

The name C{llmux} on the package index belongs to an unrelated project, so the
distribution follows Twisted's C{tx} convention while the import package, the
twistd plugin and the console script are all called C{llmux}.
"""

from setuptools import find_packages, setup

setup(
    name="txllmux",
    use_incremental=True,
    description="Hook-driven multiplexer for OpenAI-compatible LLM inference servers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    package_dir={"": "src"},
    # twisted/plugins has no __init__.py by design, so find_packages cannot see it.
    packages=find_packages("src") + ["twisted.plugins"],
    package_data={
        "llmux": ["py.typed"],
        "llmux.web": ["ui/index.html", "ui/dashboard.js", "ui/dashboard.css"],
    },
    install_requires=[
        # 25.5 added Site(parsePOSTFormSubmission=...). These lower bounds were
        # checked together: the suite passes on exactly these versions.
        "twisted>=25.5.0",
        "treq>=24.9.1",
        "zope.interface>=6.0",
        "incremental>=24.7.2",
        "attrs>=23.1.0",
        "PyYAML>=6.0",
        "prometheus_client>=0.20.0",
        # multipart/form-data parsing for the model field of audio uploads.
        "multipart>=1.1.0",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            "openai>=1.30",
            # The dashboard's browser tests (with Debian's chromium and
            # chromium-driver; skipped without them).
            "selenium>=4.10",
        ],
        "lint": [
            "ruff>=0.6",
            "mypy>=1.10",
            "mypy-zope>=1.0.5",
            "types-PyYAML",
        ],
    },
    entry_points={"console_scripts": ["llmux = llmux._cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
    ],
)
