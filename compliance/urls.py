"""Public (unauthenticated) pages, included at the site root."""

from django.urls import path

from compliance import privacy_views, views

app_name = "compliance"

urlpatterns = [
    path("opt-in/", views.opt_in, name="opt_in"),
    path("opt-in/thanks/", views.opt_in_thanks, name="opt_in_thanks"),
    path("privacy/request/", privacy_views.privacy_request, name="privacy_request"),
    path("privacy/request/<str:token>/", privacy_views.privacy_request_status, name="privacy_request_status"),
    path(
        "privacy/request/<str:token>/verify/",
        privacy_views.privacy_request_verify,
        name="privacy_request_verify",
    ),
    path(
        "privacy/request/<str:token>/new-code/",
        privacy_views.privacy_request_new_code,
        name="privacy_request_new_code",
    ),
    path(
        "privacy/request/<str:token>/package.json",
        privacy_views.privacy_request_package,
        name="privacy_request_package",
    ),
    path(
        "privacy/request/<str:token>/summary.txt",
        privacy_views.privacy_request_summary,
        name="privacy_request_summary",
    ),
]
