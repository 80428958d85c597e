"""webhook-receiver: a tiny stdlib HTTP receiver that logs (and records) every notification it gets.

The dev stack's stand-in for Slack and PagerDuty, and the tests' recording endpoint.
"""

from webhook_receiver.server import Notification, WebhookReceiver

__all__ = ["Notification", "WebhookReceiver"]
