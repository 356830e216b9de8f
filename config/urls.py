from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz
from messaging.webhooks import WhatsAppWebhookView

admin.site.site_header = "WhatsApp messaging"
admin.site.site_title = "WhatsApp messaging"
admin.site.index_title = "Operations"

urlpatterns = [
    # First: Meta's deliveries are most of the traffic, and Django tries patterns in order.
    path("webhooks/whatsapp/", WhatsAppWebhookView.as_view(), name="whatsapp-webhook"),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("", include("compliance.urls")),
    path("", include("messaging.automations.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("messaging.api.urls")),
    path("api/v1/", include("compliance.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz/", healthz, name="healthz"),
]
