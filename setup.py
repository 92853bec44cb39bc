"""Package discovery for flowkit (all metadata lives in pyproject.toml).

flowkit ships two source trees: ``flowkit/`` (the core) and ``plugins/`` (the
built-in plugins, installed as ``flowkit.plugins``). ``pyproject.toml`` cannot
combine automatic discovery with that mapping, so this file discovers every
package of both trees; a new subpackage is shipped without editing a list.
``plugins/example_plugin`` is a separately packaged third-party example and is
not part of flowkit's wheel.
"""

from setuptools import find_packages, setup

core = find_packages(include=["flowkit", "flowkit.*"])
builtin_plugins = ["flowkit.plugins"] + [
    f"flowkit.plugins.{name}"
    for name in find_packages("plugins", exclude=["example_plugin", "example_plugin.*"])
]

setup(packages=core + builtin_plugins, package_dir={"flowkit.plugins": "plugins"})
