from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from messaging.services import api_token_create


class Command(BaseCommand):
    help = "Create a REST API bearer token for USERNAME and print it (alone) on stdout. It is shown once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'Shopify integration'.")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive.")
        _, token = api_token_create(user=user, name=name)
        self.stdout.write(token)
