"""On PostgreSQL the database itself refuses to change or delete consent events, whoever asks
(a migration, a DBA's psql session, a bug). Other databases rely on the model-layer guard."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION compliance_consent_event_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'consent ledger events are append-only (' || TG_OP || ' refused)',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS compliance_consent_event_append_only ON compliance_consentevent;
CREATE TRIGGER compliance_consent_event_append_only
    BEFORE UPDATE OR DELETE ON compliance_consentevent
    FOR EACH ROW EXECUTE FUNCTION compliance_consent_event_immutable();
"""

DROP = """
DROP TRIGGER IF EXISTS compliance_consent_event_append_only ON compliance_consentevent;
DROP FUNCTION IF EXISTS compliance_consent_event_immutable();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_consent_ledger")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
