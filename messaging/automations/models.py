"""Automations: an outside system (a shop, a help desk, an HR tool) posts signed events to its own
endpoint; rules staff set up turn each event into a template message, through the same compliance gate
as every other message.

    Integration ──< AutomationRule ──> MessageTemplate
         │                 │
         └──< AutomationEvent ──< AutomationRun ──> Message (when one was created)

An event is stored before it is acknowledged (nothing acknowledged is lost) and once per
(integration, event id): a redelivery is acknowledged as a duplicate and sends nothing again. Shopify
signs only the body, so for Shopify a body already received is a duplicate too, whatever its (unsigned)
webhook id or topic. Every rule an event matched leaves one run row per recipient saying what happened
(sent, refused and why, or a mapping error naming the missing path).
"""

import secrets

from django.conf import settings
from django.db import models


def _new_slug() -> str:
    # The endpoint's address is not its authentication (the signature is), but an unguessable one keeps
    # scanners from even finding which integrations exist.
    return secrets.token_urlsafe(18)


class Integration(models.Model):
    class Kind(models.TextChoices):
        SHOPIFY = "shopify", "Shopify"
        ZENDESK = "zendesk", "Zendesk"
        BAMBOOHR = "bamboohr", "BambooHR"
        GENERIC = "generic", "Generic JSON"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=100)
    slug = models.CharField(max_length=32, unique=True, default=_new_slug, editable=False)
    # The signing secret, encrypted under the master key (compliance.crypto): never shown back, never logged.
    secret_encrypted = models.TextField(editable=False)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class AutomationRule(models.Model):
    """Event type → template, with the template's body variables and the recipient's phone number taken
    from the event payload by dotted paths (`order.id`, `line_items.0.title`)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(max_length=100)
    event_type = models.CharField(
        max_length=100,
        help_text="Shopify: orders/create, orders/fulfilled, orders/delayed (a fulfillment event with "
        "status delayed). Zendesk: ticket.solved. BambooHR: employee.created. Generic: any text your "
        'system sends as "event_type" in the signed JSON body.',
    )
    template = models.ForeignKey(
        "templates_app.MessageTemplate", on_delete=models.PROTECT, related_name="automation_rules"
    )
    parameters = models.JSONField(
        default=list,
        blank=True,
        help_text="One entry per body variable of the template, in order: a dotted path into the event "
        '("order.id", "customer.first_name", "line_items.0.title") or {"text": "a literal"}.',
    )
    phone_path = models.CharField(
        max_length=200, help_text='Dotted path to the recipient\'s phone number, e.g. "customer.phone".'
    )
    sender = models.ForeignKey(
        "messaging.Sender",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The number it sends from; the default sender when empty.",
    )
    is_active = models.BooleanField(default=False, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who wrote the version that would run: like the author, they cannot be its second person.
    last_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["integration", "event_type", "name"]
        permissions = [("activate_automationrule", "Can activate or deactivate automation rules")]

    def __str__(self) -> str:
        return f"{self.name}: {self.event_type} → {self.template}"


class AutomationEvent(models.Model):
    """One delivery from an outside system, as received (raw body) and once per event id (for
    Shopify, also once per body)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=200)
    event_type = models.CharField(max_length=100)
    raw_body = models.TextField()
    body_sha256 = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "event_id"], name="one_automation_event_per_id")
        ]
        indexes = [
            # Shopify's replay check: has this integration received this exact body before?
            models.Index(fields=["integration", "body_sha256"], name="automation_event_body"),
            # The sweeper's queue: events whose processing task was lost.
            models.Index(
                fields=["received_at"],
                name="automation_event_unprocessed",
                condition=models.Q(processed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class AutomationRun(models.Model):
    class Outcome(models.TextChoices):
        QUEUED = "queued", "queued (sent on its way)"
        REFUSED = "refused", "refused by the gate"
        MAPPING_ERROR = "mapping_error", "mapping error"
        TEMPLATE_NOT_APPROVED = "template_not_approved", "template not approved"
        INVALID_PHONE_NUMBER = "invalid_phone_number", "invalid phone number"
        DUPLICATE = "duplicate", "duplicate delivery (nothing sent again)"
        PAYLOAD_ERASED = "payload_erased", "payload erased before processing (nothing sent)"
        ERROR = "error", "other error"

    event = models.ForeignKey(AutomationEvent, on_delete=models.CASCADE, related_name="runs")
    rule = models.ForeignKey(AutomationRule, null=True, on_delete=models.SET_NULL, related_name="runs")
    outcome = models.CharField(max_length=24, choices=Outcome.choices, db_index=True)
    code = models.CharField(max_length=40, blank=True, help_text="The gate's or the mapping's code.")
    detail = models.TextField(blank=True)
    message = models.ForeignKey(
        "messaging.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} ({self.code})" if self.code else self.get_outcome_display()
