"""Build of the HBNN C kernel; all other metadata lives in setup.cfg.

The kernel is an optional extension: when no C compiler is there (or it fails), the install
still succeeds and dualnet uses the NumPy reference path (`dualnet info` says which path is
active). It is loaded with ctypes, not imported, so it uses no Python C API. No -march flag:
the SIMD code paths carry their own target attributes and are chosen at run time.
"""
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildKernel(build_ext):
    """Add GCC/Clang flags only for compilers that take them (MSVC has no pthreads anyway)."""

    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = ["-O3", "-fPIC", "-pthread", "-std=gnu11"]
                ext.extra_link_args = ["-pthread"]
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "dualnet.hbnn._hbnn_kernel",
            sources=["dualnet/hbnn/hbnn_kernel.c"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildKernel},
)
