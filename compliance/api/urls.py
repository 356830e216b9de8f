from django.urls import path

from compliance.api.privacy import PrivacyRequestDetailView, PrivacyRequestListCreateView
from compliance.api.views import ConsentListCreateView, ContactConsentHistoryView

urlpatterns = [
    path("consents/", ConsentListCreateView.as_view(), name="consent-list"),
    path(
        "contacts/<int:contact_id>/consents/",
        ContactConsentHistoryView.as_view(),
        name="contact-consent-history",
    ),
    path("privacy-requests/", PrivacyRequestListCreateView.as_view(), name="privacy-request-list"),
    path(
        "privacy-requests/<str:reference>/",
        PrivacyRequestDetailView.as_view(),
        name="privacy-request-detail",
    ),
]
