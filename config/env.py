"""The one place that reads the process environment.

Everything configurable comes from environment variables (optionally from a `.env` file in the project
root, which never overrides a variable that is already set). Settings modules import `env` and
`BASE_DIR` from here; nothing else in the project touches `os.environ` for configuration.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    environ.Env.read_env(str(_dotenv), overwrite=False)
