"""Staff roles as Django groups. The groups themselves are created by a data migration; the
permissions each one holds are (re)applied after every `migrate`, because permissions only exist once
their app's models have been migrated. Later features add their permissions here, keeping each role
to the least it needs."""

from django.db.models.signals import post_migrate

COMPOSER = "Composer"
APPROVER = "Approver"
AUDITOR = "Auditor"
COMPLIANCE_OFFICER = "Compliance officer"
OPERATOR = "Operator"
ALL_ROLES = (COMPOSER, APPROVER, AUDITOR, COMPLIANCE_OFFICER, OPERATOR)

#: role → "app_label.codename" permissions it holds (and nothing else).
ROLE_PERMISSIONS: dict[str, set[str]] = {
    COMPOSER: {
        "messaging.view_contact",
        "messaging.add_contact",
        "messaging.change_contact",
        "messaging.view_tag",
        "messaging.add_tag",
        "messaging.view_sender",
        "templates_app.view_messagetemplate",
        "templates_app.add_messagetemplate",
        "templates_app.change_messagetemplate",
        # Writes messages (drafts, submissions); a second person approves them.
        "messaging.add_message",
        "messaging.view_message",
        # Prepares campaigns (drafts, dry runs) and submits them; a second person approves them.
        "messaging.add_campaign",
        "messaging.change_campaign",
        "messaging.view_campaign",
        "messaging.view_campaignrecipient",
        "messaging.view_campaignevent",
        # Writes automation rules (event → template); a second person activates them.
        "automations.view_automationrule",
        "automations.add_automationrule",
        "automations.change_automationrule",
    },
    # Reviews templates before they go to Meta (never their own: templates_app.services enforces it).
    APPROVER: {
        "messaging.view_contact",
        "messaging.view_tag",
        "messaging.view_sender",
        "templates_app.view_messagetemplate",
        "templates_app.review_template",
        # Approves or rejects messages written by others (never their own: messaging.outbound).
        "messaging.view_message",
        "messaging.approve_message",
        # Approves campaigns or sends them back to draft (never their own: messaging.campaigns).
        "messaging.view_campaign",
        "messaging.view_campaignrecipient",
        "messaging.view_campaignevent",
        "messaging.approve_campaign",
        # Pauses, resumes or cancels a running campaign (messaging.campaign_dispatch).
        "messaging.control_campaign",
        # Activates automation rules written by others (never their own: messaging.automations.services).
        "automations.view_automationrule",
        "automations.activate_automationrule",
    },
    # Reads everything about consent (ledger, current state, texts, exports, staff audit trail) and
    # exports the ledger; changes nothing.
    AUDITOR: {
        "messaging.view_contact",
        "messaging.view_tag",
        "messaging.view_sender",
        "templates_app.view_messagetemplate",
        "compliance.view_consentevent",
        "compliance.view_consentstate",
        "compliance.view_consenttext",
        "compliance.view_consentexport",
        "compliance.view_staffauditentry",
        "compliance.export_consent",
        # Every message, its timeline and the delivery log (requests to the provider, redacted).
        "messaging.view_message",
        "messaging.view_providercall",
        # The webhook inbox (raw deliveries as received) and Meta's alerts, read-only.
        "messaging.view_webhookevent",
        "messaging.view_provideralert",
        # Privacy requests, their timelines and deletion certificates; the yearly records and metrics.
        "compliance.view_privacyrequest",
        "compliance.view_privacyrequestevent",
        "compliance.view_deletioncertificate",
        "compliance.view_privacy_metrics",
        # What outside systems sent, which rules ran and what each run did (sent, refused and why).
        "automations.view_automationrule",
        "automations.view_automationevent",
        "automations.view_automationrun",
    },
    # An auditor's reading and exporting, plus writing new consent wording and handling privacy requests.
    COMPLIANCE_OFFICER: {
        "messaging.view_contact",
        "messaging.change_contact",
        "messaging.view_tag",
        "messaging.view_sender",
        "compliance.view_consentevent",
        "compliance.view_consentstate",
        "compliance.view_consenttext",
        "compliance.add_consenttext",
        "compliance.view_consentexport",
        "compliance.view_staffauditentry",
        "compliance.export_consent",
        # Handles privacy requests: files them for people who call or write, verifies, extends,
        # fulfils or denies them (compliance.privacy), and reads the records and metrics.
        "compliance.view_privacyrequest",
        "compliance.add_privacyrequest",
        "compliance.fulfil_privacyrequest",
        "compliance.view_privacyrequestevent",
        "compliance.view_deletioncertificate",
        "compliance.view_privacy_metrics",
    },
    # Keeps the WhatsApp connection healthy: reads the webhook inbox and replays deliveries (the one
    # "change" a stored delivery allows; processing is idempotent), reads and acknowledges Meta's alerts,
    # and reads conversations to check what a delivery did. Sends nothing, changes no consent.
    OPERATOR: {
        "messaging.view_contact",
        "messaging.view_sender",
        "messaging.view_message",
        "messaging.view_webhookevent",
        "messaging.change_webhookevent",
        "messaging.view_provideralert",
        "messaging.change_provideralert",
        # Watches running campaigns and pauses, resumes or cancels one that misbehaves (a flood of
        # failures, a wrong audience); sees its recipients and history, approves nothing.
        "messaging.view_campaign",
        "messaging.view_campaignrecipient",
        "messaging.view_campaignevent",
        "messaging.control_campaign",
    },
}


def roles_apply_permissions(**_: object) -> None:
    from django.contrib.auth.models import Group, Permission

    for role, wanted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for dotted in sorted(wanted):
            app_label, codename = dotted.split(".", 1)
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                permissions.append(permission)
        group.permissions.set(permissions)


def connect_signals() -> None:
    post_migrate.connect(roles_apply_permissions, dispatch_uid="messaging.roles_apply_permissions")
