"""Meta's WhatsApp Cloud API over the Graph API: `{GRAPH_URL}/{API_VERSION}/...` with a bearer token."""

import json
import logging
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from messaging.whatsapp.base import SenderRef, WhatsAppBackend
from messaging.whatsapp.errors import WhatsAppApiError, WhatsAppConfigurationError, WhatsAppTransportError

logger = logging.getLogger(__name__)


class CloudBackend(WhatsAppBackend):
    name = "cloud"

    def __init__(
        self,
        *,
        graph_url: str,
        api_version: str,
        access_token: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        pool_size: int = 32,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not access_token:
            raise WhatsAppConfigurationError(
                "WHATSAPP_ACCESS_TOKEN is not set: the cloud backend cannot call Meta."
            )
        self.base_url = f"{graph_url.rstrip('/')}/{api_version.strip('/')}"
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        # One pooled keep-alive connection per worker thread; Meta's limits are enforced by our own
        # limiter, so urllib3 must not retry behind our back (a retried POST could send twice).
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json",
            "User-Agent": "wa-consent/1",
        }
        self.session.headers.update(headers)
        # Sends (the hot path: every message) go through urllib3 directly, without requests' layers
        # (hooks, cookies, redirects, environment proxies: none of which a send uses), which costs a
        # sending worker a good share of its CPU per message. Same pool size; no retries either.
        self._send_pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            headers={**headers, "Content-Type": "application/json"},
        )

    def message_endpoint(self, sender: SenderRef) -> str:
        return f"{self.base_url}/{sender.phone_number_id}/messages"

    def _post_message(self, sender: SenderRef, payload: dict[str, Any]) -> dict[str, Any]:
        path = f"{sender.phone_number_id}/messages"
        try:
            response = self._send_pool.request(
                "POST", f"{self.base_url}/{path}", body=json.dumps(payload).encode()
            )
        except NewConnectionError as exc:  # refused, DNS: the request never left
            raise WhatsAppTransportError(
                f"Connection to the Graph API failed: {exc}", may_have_been_sent=False
            ) from exc
        except ConnectTimeoutError as exc:
            raise WhatsAppTransportError(
                f"Connecting to the Graph API timed out: {exc}", may_have_been_sent=False
            ) from exc
        except ReadTimeoutError as exc:
            raise WhatsAppTransportError(
                f"The Graph API did not answer in time: {exc}", may_have_been_sent=True
            ) from exc
        except HTTPError as exc:  # reset or dropped once connected: the request may have gone out
            raise WhatsAppTransportError(
                f"Connection to the Graph API failed: {exc}", may_have_been_sent=True
            ) from exc
        try:
            body = json.loads(response.data)
        except ValueError:
            body = {"body": response.data.decode("utf-8", "replace")[:2000]}
        return self._answer("POST", path, response.status, body)

    def _get_templates_page(self, waba_id: str, *, after: str | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return self._request("GET", f"{waba_id}/message_templates", params=params)

    def _post_template(self, waba_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"{waba_id}/message_templates", json=definition)

    def _post_template_edit(self, template_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", template_id, json=payload)

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base_url}/{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectTimeout as exc:
            raise WhatsAppTransportError(
                f"Connecting to the Graph API timed out: {exc}", may_have_been_sent=False
            ) from exc
        except requests.ConnectionError as exc:
            # A refused connection or failed DNS lookup (urllib3's NewConnectionError) never carried the
            # request, so it is safe to retry; a connection reset or dropped after the request went out
            # might have, so a POST then counts as possibly sent.
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            never_connected = isinstance(reason, NewConnectionError)
            raise WhatsAppTransportError(
                f"Connection to the Graph API failed: {exc}",
                may_have_been_sent=method == "POST" and not never_connected,
            ) from exc
        except requests.Timeout as exc:
            raise WhatsAppTransportError(
                f"The Graph API did not answer in time: {exc}", may_have_been_sent=method == "POST"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {"body": response.text[:2000]}
        return self._answer(method, path, response.status_code, body)

    def _answer(self, method: str, path: str, http_status: int, body: Any) -> dict[str, Any]:
        """Meta's answer as a dict, or its error raised as a classified WhatsAppApiError."""
        if http_status >= 400 or (isinstance(body, dict) and "error" in body):
            error = WhatsAppApiError.from_response(http_status, body)
            logger.warning(
                "Graph API %s %s failed: HTTP %s code=%s action=%s fbtrace_id=%s",
                method,
                path,
                http_status,
                error.code,
                error.action,
                error.fbtrace_id,
            )
            raise error
        if not isinstance(body, dict):
            raise WhatsAppApiError(
                message="The Graph API answered with a non-object body",
                code=None,
                http_status=http_status,
                raw={"body": body},
            )
        return body

    def close(self) -> None:
        self.session.close()
        self._send_pool.clear()
