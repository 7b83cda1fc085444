"""Print the runtime requirements of pyproject.toml, one per line, plus those of the extras
named in $EXTRAS (comma-separated). The Dockerfile installs them in a layer of their own,
before the source is copied, so a source change does not reinstall every dependency."""

import os
import tomllib

with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)["project"]
requirements = list(project["dependencies"])
for extra in filter(None, (e.strip() for e in os.environ.get("EXTRAS", "").split(","))):
    requirements += project["optional-dependencies"][extra]  # an unknown extra fails the build
print("\n".join(requirements))
