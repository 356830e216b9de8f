from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from compliance.erasure import ConsentPersonalData, PrivacyRequestsPersonalData
        from compliance.personal_data import holder_register

        holder_register(ConsentPersonalData())
        holder_register(PrivacyRequestsPersonalData())
