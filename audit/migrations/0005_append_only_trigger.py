from django.db import migrations

# On PostgreSQL the database itself refuses UPDATE and DELETE of audit records,
# except in a transaction of the retention job (SET LOCAL inferia.audit_retention = 'on').
FORWARD = """
CREATE OR REPLACE FUNCTION inferia_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('inferia.audit_retention', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_append_only ON audit_auditrecord;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_auditrecord
  FOR EACH ROW EXECUTE FUNCTION inferia_audit_append_only();
DROP TRIGGER IF EXISTS usage_append_only ON audit_usagerecord;
CREATE TRIGGER usage_append_only BEFORE UPDATE OR DELETE ON audit_usagerecord
  FOR EACH ROW EXECUTE FUNCTION inferia_audit_append_only();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS audit_append_only ON audit_auditrecord;
DROP TRIGGER IF EXISTS usage_append_only ON audit_usagerecord;
DROP FUNCTION IF EXISTS inferia_audit_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)  # no %-interpolation of the SQL


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_chain_and_columns")]
    operations = [migrations.RunPython(forward, backward)]
