"""Play a customer writing in, through the simulator backend (posts a signed inbound webhook)."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from messaging.phone import phone_normalize
from messaging.services import sender_get_default
from messaging.whatsapp import backend_create


class Command(BaseCommand):
    help = "Simulate an inbound WhatsApp text from PHONE (needs the app running, e.g. `make run`)."

    def add_arguments(self, parser):
        parser.add_argument("phone")
        parser.add_argument("text")
        parser.add_argument("--name", default="", help="The customer's WhatsApp profile name.")
        parser.add_argument("--reply-to", default=None, help="wamid of the message being answered.")

    def handle(self, *args, phone: str, text: str, name: str, reply_to: str | None, **options):
        if settings.WHATSAPP["BACKEND"] != "simulator":
            raise CommandError("WHATSAPP_BACKEND is not 'simulator': only the simulator can play a customer.")
        try:
            e164 = phone_normalize(phone)
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from exc
        sender = sender_get_default()
        simulator = backend_create("simulator")
        wamid = simulator.simulate_reply(
            sender=sender.ref,
            from_wa_id=e164,
            text=text,
            profile_name=name,
            context_wamid=reply_to,
        )
        simulator.wait_for_webhooks()
        self.stdout.write(wamid)
