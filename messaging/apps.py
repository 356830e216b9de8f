from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from compliance.contacts import directory_register
        from compliance.personal_data import holder_register
        from compliance.signals import double_opt_in_requested
        from messaging import admin_autoreplies, roles  # noqa: F401 - admin_autoreplies registers its admin
        from messaging.directory import MessagingContactDirectory
        from messaging.keywords import on_double_opt_in_requested
        from messaging.personal_data import MessagingPersonalData

        roles.connect_signals()
        directory_register(MessagingContactDirectory())
        # Privacy requests (know, delete, correct) reach contacts, messages and webhooks through this.
        holder_register(MessagingPersonalData())
        # Compliance asks for a double opt-in confirmation; messaging sends the template.
        double_opt_in_requested.connect(on_double_opt_in_requested, dispatch_uid="messaging.double_opt_in")
