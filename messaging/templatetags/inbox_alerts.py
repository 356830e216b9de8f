"""`{% provider_alerts_banner %}`: Meta's unacknowledged errors and warnings, for the admin index."""

from django import template

from messaging.admin_inbox import ALERTS_IN_BANNER, BANNER_COUNT_CAP, VIEW_ALERT, alerts_needing_attention

register = template.Library()


@register.inclusion_tag("admin/messaging/provideralert/banner.html", takes_context=True)
def provider_alerts_banner(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm(VIEW_ALERT):
        return {"show": False}
    alerts = alerts_needing_attention().select_related("sender")
    latest = list(alerts[:ALERTS_IN_BANNER])
    if not latest:
        return {"show": False}
    # Counting stops at the cap: bounded work on every visit to the index, however many piled up.
    count = alerts.values("pk")[: BANNER_COUNT_CAP + 1].count()
    return {
        "show": True,
        "alerts": latest,
        "count": count,
        "count_display": f"{BANNER_COUNT_CAP}+" if count > BANNER_COUNT_CAP else str(count),
        "has_errors": alerts.filter(severity="error").exists(),
    }
