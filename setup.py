from setuptools import find_packages, setup

# dagster, dagster-webserver and dagster-dg-cli (the `dg` CLI) must share one version; the libraries
# (dagster-aws, dagster-postgres) follow dagster's 0.x companion numbering for the same release.
DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"

setup(
    name="makenaide_assets",
    version="0.1.0",
    description="Makenaide: an Upbit KRW trading pipeline as a Dagster asset graph",
    python_requires=">=3.11,<3.12",
    # Python packages only (directories with an __init__.py); the data directories inside the
    # package are declared below as package data of `makenaide_assets`, file patterns included.
    # No include_package_data: it would take every file setuptools' manifest lists and treat each
    # data directory (data/upbit_sample/..., prompts, config) as a package missing from `packages`
    # ("Package would be ignored"). Everything shipped besides modules is listed here.
    packages=find_packages(include=["makenaide_assets", "makenaide_assets.*"]),
    include_package_data=False,
    package_data={
        "makenaide_assets": [
            "data/upbit_sample/*.json",
            "data/upbit_sample/*.md",
            "data/upbit_sample/candles/*/*.csv.gz",
            "config/*.yaml",
            "prompts/*.md",
        ]
    },
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        # `dg dev`, `dg check defs`, `dg list defs`, `dg launch` (pyproject.toml [tool.dg]): pure-Python
        # wheels, about 16 MB installed, so in the base install the demo gets.
        f"dagster-dg-cli=={DAGSTER}",
        f"dagster-aws=={DAGSTER_LIBS}",
        f"dagster-postgres=={DAGSTER_LIBS}",
        "pandas>=2.2,<3.2",
        "numpy>=1.26,<2.5",
        "pyarrow>=15,<27",
        "pyupbit==0.2.34",
        "openai>=3.40,<4",
        "pydantic>=2.7,<3",
        "PyJWT>=2.8,<3",
        "requests>=2.31,<3",
        "SQLAlchemy>=2.0,<2.2",
        "alembic>=1.13,<2",  # the ledger's migrations (resources/ledger/migrations), not only dagster's
        "psycopg2-binary>=2.9,<3",
        "universal-pathlib>=0.2,<0.4",
        "s3fs>=2024.2",
        "tabulate>=0.9,<0.11",
        "matplotlib>=3.8,<3.12",
        "PyYAML>=6,<7",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "responses>=0.25,<0.27",
            "ta-lib>=0.6,<0.9",
            "moto[server]>=5.0,<6",
            "selenium>=4.20,<5",
            "vectorbt==1.2.0",
            "ruff>=0.6",
        ],
        "dev": ["ruff>=0.6", "pyinstrument>=4,<6"],
    },
)
