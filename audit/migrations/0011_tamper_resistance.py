from django.db import migrations, models

# PostgreSQL: no session setting unlocks the audit tables any more.
# - UPDATE is always refused; DELETE only of rows older than the retention floor
#   (30 days), which is all the retention job may remove anyway.
# - Retention runs through inferia_audit_prune(), SECURITY DEFINER: in a deployment
#   the application role gets EXECUTE on it and no DELETE on the tables.
# - TRUNCATE is refused for every role but a superuser (who could drop the trigger).
FORWARD = """
CREATE OR REPLACE FUNCTION inferia_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' AND OLD.created_at < clock_timestamp() - interval '30 days' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION inferia_audit_no_truncate() RETURNS trigger AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'audit records are append-only (TRUNCATE refused)';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_no_truncate ON audit_auditrecord;
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_auditrecord
  FOR EACH STATEMENT EXECUTE FUNCTION inferia_audit_no_truncate();
DROP TRIGGER IF EXISTS usage_no_truncate ON audit_usagerecord;
CREATE TRIGGER usage_no_truncate BEFORE TRUNCATE ON audit_usagerecord
  FOR EACH STATEMENT EXECUTE FUNCTION inferia_audit_no_truncate();

CREATE OR REPLACE FUNCTION inferia_audit_prune(p_org uuid, p_cutoff timestamptz)
RETURNS TABLE (audit_deleted bigint, usage_deleted bigint, last_seq bigint, last_hash text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  a bigint; u bigint; s bigint; h text;
BEGIN
  IF p_cutoff > clock_timestamp() - interval '30 days' THEN
    RAISE EXCEPTION 'audit retention below the 30-day floor refused';
  END IF;
  SELECT r.seq, r.hash INTO s, h FROM audit_auditrecord r
    WHERE r.org_id = p_org AND r.created_at < p_cutoff ORDER BY r.seq DESC LIMIT 1;
  DELETE FROM audit_auditrecord WHERE org_id = p_org AND created_at < p_cutoff;
  GET DIAGNOSTICS a = ROW_COUNT;
  DELETE FROM audit_usagerecord WHERE org_id = p_org AND created_at < p_cutoff;
  GET DIAGNOSTICS u = ROW_COUNT;
  RETURN QUERY SELECT a, u, s, h;
END;
$$;
REVOKE ALL ON FUNCTION inferia_audit_prune(uuid, timestamptz) FROM PUBLIC;
"""
BACKWARD = """
DROP FUNCTION IF EXISTS inferia_audit_prune(uuid, timestamptz);
DROP TRIGGER IF EXISTS audit_no_truncate ON audit_auditrecord;
DROP TRIGGER IF EXISTS usage_no_truncate ON audit_usagerecord;
DROP FUNCTION IF EXISTS inferia_audit_no_truncate();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0010_alert_gateway_degraded")]
    operations = [
        migrations.AddField(
            model_name="auditchainhead",
            name="pruned_seq",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="auditchainhead",
            name="pruned_hash",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(forward, backward),
    ]
