"""What the tests that run TensorFlow in subprocesses (their own file as a script) share: a clean
environment for the child and free local ports for a two-worker cluster."""

import os
import socket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(**extra):
    """This environment with the repo importable, TF quiet and CPU-only, no inherited TF_CONFIG, plus `extra`."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", PYTHONHASHSEED="0")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
