import factory
from django.contrib.auth import get_user_model

from messaging.models import Contact, Sender, Tag


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class StaffUserFactory(UserFactory):
    is_staff = True


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tag-{n}")


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact
        skip_postgeneration_save = True

    phone_number = factory.Sequence(lambda n: f"+1555{2000000 + n:07d}")
    wa_id = factory.LazyAttribute(lambda c: c.phone_number.lstrip("+"))
    profile_name = factory.Faker("name")
    locale = "en_US"
    timezone = "America/New_York"

    @factory.post_generation
    def tags(self, create, extracted, **kwargs):
        if create and extracted:
            self.tags.set(TagFactory(name=name) if isinstance(name, str) else name for name in extracted)


class SenderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sender

    phone_number_id = factory.Sequence(lambda n: f"10000000000{n:04d}")
    display_phone_number = factory.Sequence(lambda n: f"+1555010{n:04d}")
    waba_id = "900800700600500"
    label = factory.Sequence(lambda n: f"Sender {n}")
