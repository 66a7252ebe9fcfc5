"""The browser settings page (Klein + jinja2): see `appliance.web.app`."""

from appliance.web.app import WebApp
from appliance.web.routing import NavEntry, Page, PageGroup, Router

__all__ = ["NavEntry", "Page", "PageGroup", "Router", "WebApp"]
