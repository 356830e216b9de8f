"""Staff roles as Django groups. The groups themselves are created by a data migration; the
permissions each one holds are (re)applied after every `migrate`, because permissions only exist once
their app's models have been migrated. Later features add their permissions here, keeping each role
to the least it needs."""

from django.db.models.signals import post_migrate

COMPOSER = "Composer"
APPROVER = "Approver"
AUDITOR = "Auditor"
COMPLIANCE_OFFICER = "Compliance officer"
ALL_ROLES = (COMPOSER, APPROVER, AUDITOR, COMPLIANCE_OFFICER)

#: role → "app_label.codename" permissions it holds (and nothing else).
ROLE_PERMISSIONS: dict[str, set[str]] = {
    COMPOSER: {
        "messaging.view_contact",
        "messaging.add_contact",
        "messaging.change_contact",
        "messaging.view_tag",
        "messaging.add_tag",
        "messaging.view_sender",
    },
    APPROVER: {"messaging.view_contact", "messaging.view_tag", "messaging.view_sender"},
    AUDITOR: {"messaging.view_contact", "messaging.view_tag", "messaging.view_sender"},
    COMPLIANCE_OFFICER: {
        "messaging.view_contact",
        "messaging.change_contact",
        "messaging.view_tag",
        "messaging.view_sender",
    },
}


def roles_apply_permissions(**_: object) -> None:
    from django.contrib.auth.models import Group, Permission

    for role, wanted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for dotted in sorted(wanted):
            app_label, codename = dotted.split(".", 1)
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                permissions.append(permission)
        group.permissions.set(permissions)


def connect_signals() -> None:
    post_migrate.connect(roles_apply_permissions, dispatch_uid="messaging.roles_apply_permissions")
