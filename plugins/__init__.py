"""The built-in plugins that ship with flowkit (importable as ``flowkit.plugins``).

Each module here is a plugin exactly as a third party would write one: a few
functions marked ``@flowkit.hookimpl`` registering small component classes.
They are declared in flowkit's ``flowkit`` entry-point group and listed in
:data:`flowkit.registry.BUILTIN_PLUGINS`.
"""

__all__: list[str] = []
