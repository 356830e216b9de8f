from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from compliance.contacts import directory_register
        from compliance.signals import double_opt_in_requested
        from messaging import admin_autoreplies, roles  # noqa: F401 - admin_autoreplies registers its admin
        from messaging.directory import MessagingContactDirectory
        from messaging.keywords import on_double_opt_in_requested

        roles.connect_signals()
        directory_register(MessagingContactDirectory())
        # Compliance asks for a double opt-in confirmation; messaging sends the template.
        double_opt_in_requested.connect(on_double_opt_in_requested, dispatch_uid="messaging.double_opt_in")
