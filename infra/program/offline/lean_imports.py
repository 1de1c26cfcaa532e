"""Lean imports of pulumi_aws for the offline plan (speed only; `pulumi up` never uses this).
"""
from __future__ import annotations

import importlib
import re
import sys
import types
from typing import Any

# `pulumi_aws.ec2` and friends import every resource module of the package on first use (ec2
# alone has ~500: about 1 s); the program needs a dozen. For the offline plan, each of these
# sub-packages is replaced, before first use, by a module that imports the one file a name
# lives in (`LaunchTemplate` -> `launch_template.py`) and falls back to running the package's
# real `__init__` for anything else. Classes and functions are the very same objects; only
# import order changes. `pulumi up` never goes through this.
LEAN_AWS_PACKAGES = ("ec2", "eks", "s3", "iam", "kms", "cloudwatch", "vpc", "codebuild", "lb", "route53")
_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


class _LeanPackage(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            if name == "__all__":  # `from pkg import *`: make every name available first
                self._load_fully()
            raise AttributeError(name)
        if not self.__dict__.get("_lean_full_load"):
            try:
                module = importlib.import_module(f"{self.__name__}.{_CAMEL_RE.sub('_', name).lower()}")
            except ImportError:
                module = None
            if module is not None:
                # A function shares its module's name (get_ami in get_ami.py); a submodule
                # (outputs, _inputs) is the attribute itself, as after a normal import.
                if hasattr(module, name):
                    value = getattr(module, name)
                elif name.islower() and module.__name__ == f"{self.__name__}.{name}":
                    value = module
                else:
                    value = None
                if value is not None:
                    setattr(self, name, value)
                    return value
            self._load_fully()
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        self._load_fully()
        return list(self.__dict__)

    def _load_fully(self) -> None:
        if self.__dict__.get("_lean_full_load"):
            return
        self.__dict__["_lean_full_load"] = True
        self.__spec__.loader.exec_module(self)  # the package's real __init__, into this module


def use_lean_aws_imports() -> None:
    """Swap not-yet-loaded pulumi_aws sub-packages for lean ones (idempotent)."""
    import importlib.util

    import pulumi_aws

    for pkg in LEAN_AWS_PACKAGES:
        fullname = f"pulumi_aws.{pkg}"
        current = sys.modules.get(fullname)
        if isinstance(current, _LeanPackage):
            continue
        if current is not None and type(current).__name__ != "_LazyModule":
            continue  # already imported for real: nothing to gain
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            continue
        lean = _LeanPackage(fullname)
        lean.__spec__ = spec
        lean.__file__ = spec.origin
        lean.__path__ = list(spec.submodule_search_locations or [])
        lean.__package__ = fullname
        lean.__loader__ = spec.loader
        sys.modules[fullname] = lean
        setattr(pulumi_aws, pkg, lean)
