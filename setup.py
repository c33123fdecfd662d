"""Build caspian: the `emulator` package and its one compiled module.

`cext/engine.pyx` (with the files it includes) becomes `emulator._engine`,
the fast path. Everything else is pure Python.
"""
import os

from setuptools import Extension, find_packages, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build-time guard
    raise SystemExit("caspian needs Cython to build: pip install 'cython>=3.0,<3.4'") from exc

DEBUG = os.environ.get("CASPIAN_DEBUG") == "1"

extensions = [
    Extension(
        "emulator._engine",
        sources=["cext/engine.pyx"],
        include_dirs=["cext/includes"],
        extra_compile_args=["-O2", "-g0"] if not DEBUG else ["-O0", "-g"],
        define_macros=[("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [],
    )
]

setup(
    name="caspian",
    version="0.1.0",
    description="Packet-level link emulator and testbed: namespaces, a Cython fast path, "
    "the Trans-Caspian cable as the default link",
    python_requires=">=3.10",
    packages=find_packages(include=["emulator", "emulator.*"]),
    package_data={"emulator": ["py.typed", "_engine.pyi", "data/*"]},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        annotate=DEBUG,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "linetrace": DEBUG,
        },
    ),
    install_requires=["pyroute2>=0.9,<0.10", "psutil>=7,<8", "scapy>=2.5,<3", "pyyaml>=6,<7", "rich>=13"],
    entry_points={
        "console_scripts": ["caspian = emulator.cli:main"],
        "pytest11": ["caspian = emulator.pytest_plugin"],
    },
)
