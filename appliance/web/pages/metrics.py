"""``/metrics``: the Prometheus text of `appliance.metrics`, for a scraper on
this machine (a direct loopback connection, not one relayed by a proxy) or
with an admin API token (``Authorization: Bearer apl_...``)."""

from __future__ import annotations

from twisted.logger import Logger

from appliance.metrics import CONTENT_TYPE, Metrics, is_loopback_request
from appliance.web.routing import Page, Router
from appliance.web.tokens import ApiTokens, bearer

log = Logger()


class MetricsPage:
    def __init__(self, metrics: Metrics, tokens: ApiTokens) -> None:
        self.metrics = metrics
        self.tokens = tokens

    def install(self, router: Router) -> None:
        router.route("/metrics", self.scrape, access="public")

    def scrape(self, page: Page) -> bytes:
        request = page.request
        secret = bearer(request)
        if secret is not None:
            token = self.tokens.find(secret)
            allowed = token is not None and token.login == "admin"
            if not allowed:
                self.metrics.login_failures.inc()
        else:
            allowed = is_loopback_request(request)
        request.setHeader(b"Cache-Control", b"no-store")
        if not allowed:
            log.warn("refused /metrics to {peer}", peer=str(getattr(request.getClientAddress(), "host", "?")))
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"forbidden: an admin API token or a direct connection from this machine is needed\n"
        request.setHeader(b"Content-Type", CONTENT_TYPE.encode("ascii"))
        return self.metrics.exposition()
