"""Lazy names of a task package: its settings load without TensorFlow, the rest on first use."""

import importlib


def lazy_exports(package, names):
    """`__getattr__` and `__dir__` for a package: {name: submodule} loaded when first asked for."""

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__
