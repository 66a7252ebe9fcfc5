"""The browser settings page (Klein + jinja2): see `appliance.web.app`."""

from appliance.web.app import NavEntry, Page, PageGroup, Router, WebApp

__all__ = ["NavEntry", "Page", "PageGroup", "Router", "WebApp"]
