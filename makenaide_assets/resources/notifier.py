"""Where alerts go: the run log always; Slack or Telegram when their webhook is configured.

Webhook URLs and bot tokens are secrets, so they are read from the environment when a message
is sent — never stored in resource config, where the UI would show them.
"""

import json
import logging
import os
import urllib.request

import dagster as dg

_log = logging.getLogger("makenaide.notifier")


class Notifier(dg.ConfigurableResource):
    slack_webhook_env: str = "MAKENAIDE_SLACK_WEBHOOK_URL"
    telegram_token_env: str = "MAKENAIDE_TELEGRAM_BOT_TOKEN"
    telegram_chat_env: str = "MAKENAIDE_TELEGRAM_CHAT_ID"
    # Telegram's Bot API; another address only for tests (a loopback server).
    telegram_api_url: str = "https://api.telegram.org"
    timeout_s: float = 10.0

    def send(self, text: str, *, routine: bool = False) -> list[str]:
        """Deliver `text` to every configured channel; returns the channels that took it.

        `routine` (the daily summary, an executed order) is logged at INFO, an alert (a failed
        run, a difference, a held-back order) at WARNING, so a console without a channel shows
        alerts without repeating every routine message. A failed webhook is logged (without its
        URL) and does not hide the others: an alert about a failed run must not itself fail the
        sensor that sends it.
        """
        _log.log(logging.INFO if routine else logging.WARNING, "makenaide %s: %s", "news" if routine else "alert", text)
        delivered = ["log"]
        slack = os.environ.get(self.slack_webhook_env)
        if slack and self._post(slack, {"text": text}, "slack"):
            delivered.append("slack")
        token, chat = os.environ.get(self.telegram_token_env), os.environ.get(self.telegram_chat_env)
        if token and chat:
            url = f"{self.telegram_api_url.rstrip('/')}/bot{token}/sendMessage"
            if self._post(url, {"chat_id": chat, "text": text}, "telegram"):
                delivered.append("telegram")
        return delivered

    def _post(self, url: str, payload: dict[str, str], channel: str) -> bool:
        request = urllib.request.Request(
            url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return 200 <= response.status < 300
        except OSError as exc:
            # The URL carries the secret, so only the channel and the error class are logged.
            _log.error("notifier: %s delivery failed (%s)", channel, type(exc).__name__)
            return False
