"""Registers the ``atlas grid`` command (cheap: no framework, no scikit-learn at registration)."""

from atlas_core import hookimpl


def _command():
    from .command import GridCommand
    return GridCommand()


@hookimpl
def atlas_register_commands(register):
    register("grid", _command, description="activation grids of one image: an icon per position, layer by layer")
