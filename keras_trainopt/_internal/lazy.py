"""Lazy package exports (PEP 562): a public name is imported on first use.

`import keras_trainopt` then costs next to nothing: no Keras backend, no
keras-tuner, no matplotlib is loaded until a name that needs it is looked
up. A package lists its exports three times: `__all__`, the imports under
`typing.TYPE_CHECKING` (for type checkers and IDEs, which do not run
`__getattr__`) and the `exports` given here; tests/test_package.py checks
that the three agree.
"""

import importlib
import sys


def lazy_exports(package, exports):
    """`__getattr__` and `__dir__` for a package that imports its names late.

    Args:
        package: the package's `__name__`.
        exports: `{module: names}`, absolute module names: each name is
            imported from its module the first time the package is asked
            for it, then kept in the package's namespace.

    Returns:
        `(__getattr__, __dir__)`, to assign at the package's top level.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name):
        module = where.get(name)
        if module is None:
            raise AttributeError(
                f"module {package!r} has no attribute {name!r}"
            )
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
