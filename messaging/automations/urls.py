from django.urls import path

from messaging.automations.views import IntegrationEndpoint

urlpatterns = [
    path("integrations/<str:slug>/", IntegrationEndpoint.as_view(), name="automations-endpoint"),
]
