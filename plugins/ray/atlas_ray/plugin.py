"""Entry point ``ray`` of the group ``atlas_core``: registers the ``ray`` executor.

Registration imports no Ray (checked by the tests): Ray is imported when the executor collects.
"""

from __future__ import annotations

import atlas_core


def _ray():
    from .executor import RayExecutor
    return RayExecutor()


@atlas_core.hookimpl
def atlas_register_executors(register):
    register("ray", _ray, description="collect on a Ray cluster (Ray Data actor pool; a local one by default)")
