from django.urls import path

from compliance.api.views import ConsentListCreateView, ContactConsentHistoryView

urlpatterns = [
    path("consents/", ConsentListCreateView.as_view(), name="consent-list"),
    path(
        "contacts/<int:contact_id>/consents/",
        ContactConsentHistoryView.as_view(),
        name="contact-consent-history",
    ),
]
