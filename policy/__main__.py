"""Entry point the Pulumi policy analyzer runs (`pulumi preview --policy-pack policy`): serves the pack.

The analyzer runs this file by path, whatever the folder is called, so the folder is loaded
as a package here and the policies come from its `rules` module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pulumi_policy import EnforcementLevel, PolicyPack


def _load(package: str = "observability_policy") -> ModuleType:
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(package, here / "__init__.py",
                                                  submodule_search_locations=[str(here)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    return module


_load()
importlib.import_module("observability_policy.secret_markers").install()
PolicyPack(
    name="observability-policies",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=importlib.import_module("observability_policy.rules").POLICIES,
)
