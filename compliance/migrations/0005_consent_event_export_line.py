"""Each consent event stores its jsonl export line (see compliance.ledger.export_lines), and every event
recorded before this migration gets its line here.

This backfill is the one sanctioned rewrite of ledger rows: on PostgreSQL it switches the append-only
trigger (migration 0002) off for this transaction only. It is safe because it writes nothing but the new,
derived column, computed by the same encoder ledger_append uses, from columns it does not touch: every
hash and link stays as it was, and `verify_consent_ledger` checks each stored line against its event's
columns afterwards, so a wrong line could not pass unnoticed. The migration runs in one transaction, so
the trigger is never seen disabled by anyone else, and a failure leaves it enabled.

It imports the application's encoder on purpose (unlike most data migrations): the stored line must be
byte for byte what ledger_append writes, not a frozen copy that could drift from it.
"""

from django.db import migrations, models

from compliance.ledger import content_export_line, event_content

APPEND_ONLY_TRIGGER = "compliance_consent_event_append_only"
BATCH_ROWS = 2000


def backfill_export_lines(apps, schema_editor) -> None:
    """Store the export line of every event that has none, oldest first, BATCH_ROWS at a time."""
    ConsentEvent = apps.get_model("compliance", "ConsentEvent")
    connection = schema_editor.connection
    table = connection.ops.quote_name(ConsentEvent._meta.db_table)
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgresql:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {APPEND_ONLY_TRIGGER}")
        after = 0
        while True:
            events = list(
                ConsentEvent.objects.filter(export_line="", sequence__gt=after).order_by("sequence")[
                    :BATCH_ROWS
                ]
            )
            if not events:
                break
            cursor.executemany(
                f"UPDATE {table} SET export_line = %s WHERE id = %s",  # noqa: S608 - our own table name
                [(content_export_line({**event_content(e), "hash": e.hash}), e.pk) for e in events],
            )
            after = events[-1].sequence
        # Not in a `finally`: after an error the transaction is aborted and rolls back, which restores
        # the trigger anyway (ALTER TABLE is transactional on PostgreSQL).
        if postgresql:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {APPEND_ONLY_TRIGGER}")


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0004_consent_exports_and_staff_audit"),
    ]

    operations = [
        migrations.AddField(
            model_name="consentevent",
            name="export_line",
            field=models.TextField(default="", editable=False),
        ),
        # Reversing drops the column (AddField's reverse); the lines need no undoing.
        migrations.RunPython(backfill_export_lines, migrations.RunPython.noop),
    ]
