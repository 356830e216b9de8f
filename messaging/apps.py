from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from compliance.contacts import directory_register
        from messaging import roles
        from messaging.directory import MessagingContactDirectory

        roles.connect_signals()
        directory_register(MessagingContactDirectory())
