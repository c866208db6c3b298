"""Packaging for myapi: ``pip install -e .[test]`` gives the app, the ``myapi`` command and the test tools."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="myapi",
    version="0.1.0",
    description="A store back end served as a resource-class REST API on Flask-RESTful",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["myapi", "myapi.*"]),
    include_package_data=True,
    install_requires=[
        "flask>=3.1,<3.2",
        "flask-restful==0.3.10",
        "werkzeug>=3.1,<3.2",
        "sqlalchemy>=2.0.30,<2.2",
        "alembic>=1.13,<2",
        # libpass is the maintained fork of passlib (same ``import passlib``);
        # passlib 1.7.4 breaks on bcrypt 5.
        "libpass>=1.9,<2",
        "argon2-cffi>=23.1",
        "bcrypt>=4.1",
        "psycopg[binary]>=3.2,<4",
        "gunicorn>=23",
        "click>=8.1",
        "orjson>=3.10",
        "flask-limiter>=3.8,<5",
        "flask-cors>=5",
        "redis>=5",  # rate-limit storage shared by several instances
        "swagger-ui-bundle>=1.1",  # the /docs page's assets, served offline
        "requests>=2.32",  # myapi.client
        "tqdm>=4.66",  # progress bars of `myapi remote`
        "standardwebhooks>=1.1,<2",  # signs webhook deliveries (DESIGN §11), as receivers verify them
        # gzip/br/zstd answers, streamed exports compressed on the fly (1.21+); brings brotli and zstd.
        "flask-compress>=1.24,<2",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "ruff>=0.6",
            "openapi-spec-validator>=0.7",
            "schemathesis>=4",
            # tests/test_docs_browser.py: drives Debian's /usr/bin/chromium (`make browser`), no browser download
            "playwright>=1.55,<2",
        ],
    },
    entry_points={"console_scripts": ["myapi=myapi.cli:main"]},
)
