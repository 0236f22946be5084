"""``knowledge_base:create`` joins the vocabulary: the built-in roles holding every
permission but a few (Owner, Admin) get it. Custom roles are left as they are."""

from django.db import migrations


def sync(apps, schema_editor):
    from orgs.access import sync_builtin_roles

    sync_builtin_roles(apps.get_model("orgs", "Role"))


class Migration(migrations.Migration):
    dependencies = [("orgs", "0006_deployment_update_permission")]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
