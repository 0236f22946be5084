from django.db import migrations


def seed(apps, schema_editor):
    from orgs.access import sync_builtin_roles

    sync_builtin_roles(apps.get_model("orgs", "Role"))


class Migration(migrations.Migration):
    dependencies = [("orgs", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
