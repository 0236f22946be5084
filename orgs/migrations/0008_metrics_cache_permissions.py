"""``metrics:read`` and ``cache:manage`` join the vocabulary: Owner and Admin get both,
Member and Viewer get ``metrics:read`` (every ``:read``). Custom roles are left as they are."""

from django.db import migrations


def sync(apps, schema_editor):
    from orgs.access import sync_builtin_roles

    sync_builtin_roles(apps.get_model("orgs", "Role"))


class Migration(migrations.Migration):
    dependencies = [("orgs", "0007_knowledge_base_create_permission")]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
