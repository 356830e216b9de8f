from rest_framework.routers import DefaultRouter

from messaging.api.messages import MessageViewSet
from messaging.api.views import ContactViewSet

router = DefaultRouter(trailing_slash=True)
router.register("contacts", ContactViewSet, basename="contact")
router.register("messages", MessageViewSet, basename="message")

urlpatterns = router.urls
