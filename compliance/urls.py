"""Public (unauthenticated) pages, included at the site root."""

from django.urls import path

from compliance import views

app_name = "compliance"

urlpatterns = [
    path("opt-in/", views.opt_in, name="opt_in"),
    path("opt-in/thanks/", views.opt_in_thanks, name="opt_in_thanks"),
]
