#!/usr/bin/env python3
"""Regenerate dualnet/dualnet_pb2.py from proto/dualnet.proto.

Needs a protoc: the one in grpcio-tools (`pip install grpcio-tools`, part of
the dev extra) or a `protoc` on PATH. The generated module is committed, so
users never need a protoc.
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def protoc_command():
    """argv prefix of an available protoc, or None."""
    try:
        import grpc_tools.protoc  # noqa: F401

        return [sys.executable, "-m", "grpc_tools.protoc"]
    except ImportError:
        found = shutil.which("protoc")
        return [found] if found else None


def main():
    command = protoc_command()
    if command is None:
        sys.exit("no protoc found: pip install grpcio-tools (or install protoc)")
    subprocess.check_call(
        command + ["-I", os.path.join(ROOT, "proto"), "--python_out", os.path.join(ROOT, "dualnet"),
                   os.path.join(ROOT, "proto", "dualnet.proto")]
    )
    print("wrote dualnet/dualnet_pb2.py")


if __name__ == "__main__":
    main()
