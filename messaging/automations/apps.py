"""Automations: outside systems (shops, help desks, HR tools) trigger template messages through
signed endpoints, by rules staff set up in the admin."""

from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "messaging.automations"
    label = "automations"
    verbose_name = "Automations"

    def ready(self) -> None:
        from compliance.personal_data import holder_register
        from messaging.automations.personal_data import AutomationsPersonalData

        # Privacy requests (know, delete) reach the events outside systems sent about a person.
        holder_register(AutomationsPersonalData())
