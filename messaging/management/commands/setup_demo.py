"""Demo data for `make run`: the environment's sender, a few dozen contacts, an admin user, and a
composer and an approver to try the two-person message flow, all with printed credentials. Safe to run
again: it reuses what exists and resets only the demo passwords."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from compliance.models import ConsentState, Purpose
from compliance.services import Evidence, consent_record, consent_text_create, consent_text_current
from messaging import roles
from messaging.models import Campaign, Contact, Tag
from messaging.phone import phone_normalize
from messaging.services import contact_create, sender_sync_from_settings
from templates_app.models import Category, MessageTemplate, TemplateStatus

DEMO_USERNAME = "admin"
#: Two staff users for the two-person flow: one writes a message, the other approves it.
DEMO_ROLE_USERS = [("composer", roles.COMPOSER), ("approver", roles.APPROVER)]
DEMO_BUSINESS = "Acme Outdoor Supply"
DEMO_TEMPLATE = "spring_gear"
DEMO_CAMPAIGN = "Spring gear (demo)"
DEMO_CONSENT_TEXT = (
    "By ticking a box you agree that Acme Outdoor Supply may send you the WhatsApp messages you chose, "
    "at the number you gave. Consent is not a condition of any purchase. Message frequency varies. "
    "Reply STOP at any time to stop, or HELP for help."
)
DEMO_CONTACTS = [
    ("+1 555 010 2001", "Ava Johnson", "en_US", "America/New_York", ["vip", "newsletter"]),
    ("+1 555 010 2002", "Liam Smith", "en_US", "America/Chicago", ["newsletter"]),
    ("+1 555 010 2003", "Sofia Garcia", "es_US", "America/Los_Angeles", ["vip"]),
    ("+1 555 010 2004", "Noah Williams", "en_US", "America/Denver", ["shopify"]),
    ("+1 555 010 2005", "Mia Brown", "en_US", "America/Phoenix", ["shopify", "newsletter"]),
    ("+1 555 010 2006", "Ethan Davis", "en_US", "America/Anchorage", []),
    ("+1 555 010 2007", "Isabella Martinez", "es_US", "America/New_York", ["zendesk"]),
    ("+1 555 010 2008", "Lucas Miller", "en_US", "Pacific/Honolulu", ["employees"]),
    ("+1 555 010 2009", "Amelia Wilson", "en_US", "America/Chicago", ["employees", "vip"]),
    ("+1 555 010 2010", "Mason Moore", "en_US", "America/Los_Angeles", ["zendesk"]),
    ("+1 555 010 2011", "Harper Taylor", "en_US", "America/New_York", ["newsletter"]),
    ("+1 555 010 2012", "Elijah Anderson", "en_US", "America/Detroit", []),
]


class Command(BaseCommand):
    help = (
        "Load demo data (sender, contacts) and create or reset the demo admin user; prints its credentials."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        sender = sender_sync_from_settings()
        created = 0
        for phone, name, locale, tz, tags in DEMO_CONTACTS:
            if not Contact.objects.filter(phone_number=phone_normalize(phone)).exists():
                contact_create(phone_number=phone, profile_name=name, locale=locale, timezone=tz, tags=tags)
                created += 1
        if consent_text_current() is None:
            consent_text_create(version="demo-v1", business_name=DEMO_BUSINESS, body=DEMO_CONSENT_TEXT)
        if sender:
            self._verification_template(waba_id=sender.waba_id)
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "admin@example.com"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        role_passwords = []
        for username, role in DEMO_ROLE_USERS:
            role_password = secrets.token_urlsafe(12)
            role_user, _ = get_user_model().objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            role_user.is_staff = role_user.is_active = True
            role_user.is_superuser = False
            role_user.set_password(role_password)
            role_user.save()
            role_user.groups.add(Group.objects.get_or_create(name=role)[0])
            role_passwords.append((username, role, role_password))
        if sender:
            self._campaign_demo(sender)
            self.stdout.write(f"Sender: {sender}")
        self.stdout.write(f"Demo contacts: {Contact.objects.count()} ({created} new)")
        self.stdout.write(
            "\n"
            "  Admin:    http://127.0.0.1:8000/admin/\n"
            f"  Username: {DEMO_USERNAME}\n"
            f"  Password: {password}\n"
            "  API docs: http://127.0.0.1:8000/api/docs/\n"
            "  Opt-in:   http://127.0.0.1:8000/opt-in/\n"
            "  Privacy:  http://127.0.0.1:8000/privacy/request/\n"
            "  (the password is new on every `make run`)\n"
        )
        self.stdout.write("  Try the two-person flow: one writes a message, the other approves it.")
        self.stdout.write(
            f"  Or a campaign: the composer dry-runs and submits “{DEMO_CAMPAIGN}”, the approver approves it"
            " and watches its progress."
        )
        for username, role, role_password in role_passwords:
            self.stdout.write(f"  {role + ':':<10}{username} / {role_password}")
        self.stdout.write("")

    @staticmethod
    def _campaign_demo(sender) -> None:
        """A marketing template (stored as approved), marketing consent for the newsletter's readers
        (recorded as web-form opt-ins, marked as demo data in their evidence) and a draft campaign to
        them, written by the composer: the whole campaign flow works from the first `make run`."""
        template, _ = MessageTemplate.objects.get_or_create(
            waba_id=sender.waba_id,
            name=DEMO_TEMPLATE,
            language="en_US",
            defaults={
                "category": Category.MARKETING,
                "status": TemplateStatus.APPROVED,
                "components": [
                    {
                        "type": "BODY",
                        "text": "Hi {{1}}, spring gear is here: {{2}}. Reply STOP to stop these messages.",
                        "example": {"body_text": [["Ava", "20% off tents this week"]]},
                    }
                ],
            },
        )
        text = consent_text_current()
        evidence = Evidence(
            ip_address="127.0.0.1",
            user_agent="setup_demo (demo data)",
            page_url="http://127.0.0.1:8000/opt-in/",
        )
        for contact in Contact.objects.filter(tags__name="newsletter"):
            state = ConsentState.objects.filter(contact_id=contact.pk, purpose=Purpose.MARKETING).first()
            if state is None:
                consent_record(
                    contact_id=contact.pk,
                    phone_number=contact.phone_number,
                    purpose=Purpose.MARKETING,
                    action="opt_in",
                    source="web_form",
                    evidence=evidence,
                    text_version=text.version,
                )
        if not Campaign.objects.filter(name=DEMO_CAMPAIGN).exists():
            campaign = Campaign.objects.create(
                name=DEMO_CAMPAIGN,
                sender=sender,
                template=template,
                template_parameters=[{"field": "profile_name"}, {"text": "20% off tents this week"}],
                created_by=get_user_model().objects.filter(username="composer").first(),
            )
            campaign.audience_tags.set(Tag.objects.filter(name="newsletter"))

    @staticmethod
    def _verification_template(*, waba_id: str) -> None:
        """The AUTHENTICATION template that carries privacy request codes (one body parameter, the
        code), as template sync stores it once Meta approved it: without it, a code could only go as
        free text, which Meta delivers only inside the 24-hour window. Stored as approved, so the demo's
        privacy page sends codes from the first run without a review round trip."""
        MessageTemplate.objects.get_or_create(
            waba_id=waba_id,
            name=settings.PRIVACY_VERIFICATION_TEMPLATE,
            language="en_US",
            defaults={
                "category": Category.AUTHENTICATION,
                "status": TemplateStatus.APPROVED,
                "components": [
                    {
                        "type": "BODY",
                        "text": "*{{1}}* is your verification code. For your security, do not share this code.",
                        "example": {"body_text": [["123456"]]},
                    },
                    {
                        "type": "FOOTER",
                        "text": f"This code expires in {settings.PRIVACY_CODE_TTL_MINUTES} minutes.",
                    },
                ],
            },
        )
