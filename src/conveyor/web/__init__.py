"""The management web API, dashboard and Prometheus metrics of a node.

``create_app(node, token=None)`` builds the FastAPI app; ``start_web_server(node)`` serves it in
the background (``conveyor node --web``); ``conveyor web`` serves it in the foreground.
"""

from __future__ import annotations

from conveyor.web.app import create_app
from conveyor.web.metrics import METRICS
from conveyor.web.server import WebServer, start_web_server

__all__ = ["METRICS", "WebServer", "create_app", "start_web_server"]
