"""The project with settings replaced by ``DJANGOPROJECT_VARIANT_<SETTING>`` variables (a JSON
value, else the string), for the loader's refusals; ``DJANGOPROJECT_VARIANT_RAISE`` makes
the module raise that message instead."""

import json
import os

from tests.support.djangoproject.settings import *  # noqa: F403

PREFIX = "DJANGOPROJECT_VARIANT_"

if os.environ.get(f"{PREFIX}RAISE"):
    raise RuntimeError(os.environ[f"{PREFIX}RAISE"])

for _name, _raw in os.environ.items():
    if _name.startswith(PREFIX):
        try:
            globals()[_name.removeprefix(PREFIX)] = json.loads(_raw)
        except ValueError:
            globals()[_name.removeprefix(PREFIX)] = _raw
