"""``deployment:update`` joins the vocabulary: the built-in roles holding
``deployment:create`` (Owner, Admin) get it. Custom roles are left as they are
(nobody gains a permission they were not granted)."""

from django.db import migrations


def sync(apps, schema_editor):
    from orgs.access import sync_builtin_roles

    sync_builtin_roles(apps.get_model("orgs", "Role"))


class Migration(migrations.Migration):
    dependencies = [("orgs", "0005_device_authorization")]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
