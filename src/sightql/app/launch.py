"""The command line that serves the web app: ``python -m streamlit run main.py`` with SightQL's settings.

Kept apart from the pages so ``sightql app`` can build it without importing Streamlit.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from sightql.errors import ConfigError, MissingDependencyError

MAIN_SCRIPT = Path(__file__).with_name("main.py")


def streamlit_command(host: str, port: int, max_upload_mb: int) -> list[str]:
    """Headless, no usage statistics, uploads capped at the image size limit, no file watcher."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port; use one from 1 to 65535, e.g. 8501")
    if importlib.util.find_spec("streamlit") is None:
        raise MissingDependencyError("streamlit", "app")
    return [
        sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.maxUploadSize", str(max_upload_mb),
        "--browser.gatherUsageStats", "false",
    ]


def app_environment(warehouse: Path) -> dict[str, str]:
    """This process's environment with ``SIGHTQL_HOME`` set to the warehouse (as an absolute path)."""
    return {**os.environ, "SIGHTQL_HOME": str(warehouse.expanduser().resolve())}
