"""Data files installed as a package (see pyproject.toml: [tool.setuptools.package-dir])."""
