from rest_framework.routers import DefaultRouter

from messaging.api.views import ContactViewSet

router = DefaultRouter(trailing_slash=True)
router.register("contacts", ContactViewSet, basename="contact")

urlpatterns = router.urls
