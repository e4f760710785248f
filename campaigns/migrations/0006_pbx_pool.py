# PBXs become the operator's pool (DESIGN.md §5 rule 8): Pbx.tenant gives way to PbxPlacement (tenants
# placed on a PBX) and Pbx.owner (a tenant's own PBX, when the operator allows it).
#
# Every existing row becomes a platform PBX with a placement for the tenant that had it: before this
# change any tenant could create PBXs through the API, so nothing tells which rows the operator made; as
# platform PBXs they keep working (an environment-variable password stays valid) and tenants can no longer
# change them. Names must now be unique among platform PBXs: a repeated name gets its tenant's slug.

import django.db.models.deletion
from django.db import migrations, models


def placements_from_tenants(apps, schema_editor):
    Pbx = apps.get_model("campaigns", "Pbx")
    PbxPlacement = apps.get_model("campaigns", "PbxPlacement")
    seen: set[str] = set()
    for pbx in Pbx.objects.select_related("tenant").order_by("pk"):
        PbxPlacement.objects.get_or_create(tenant_id=pbx.tenant_id, pbx_id=pbx.pk)
        if pbx.name in seen:
            pbx.name = f"{pbx.name} ({pbx.tenant.slug})"[:100]
            pbx.save(update_fields=["name"])
        seen.add(pbx.name)


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0005_lead_wait_reason_outcomes'),
        ('tenants', '0002_tenant_allow_own_pbx'),
    ]

    operations = [
        migrations.CreateModel(
            name='PbxPlacement',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('max_channels', models.PositiveIntegerField(blank=True, help_text="The tenant's share of the PBX's channels (empty: no share).", null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('pbx', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='placements', to='campaigns.pbx')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='pbx_placements', to='tenants.tenant')),
            ],
            options={
                'ordering': ['tenant', 'pbx'],
            },
        ),
        migrations.AddField(
            model_name='pbx',
            name='owner',
            field=models.ForeignKey(blank=True, help_text="Empty for the platform's PBXs; the tenant that brought it otherwise.", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='own_pbxs', to='tenants.tenant'),
        ),
        migrations.RunPython(placements_from_tenants, migrations.RunPython.noop),
        migrations.AlterModelOptions(
            name='pbx',
            options={'ordering': ['name', 'pk'], 'verbose_name': 'PBX', 'verbose_name_plural': 'PBXs'},
        ),
        migrations.RemoveConstraint(
            model_name='pbx',
            name='pbx_unique_tenant_name',
        ),
        migrations.RemoveField(
            model_name='pbx',
            name='tenant',
        ),
        migrations.AlterField(
            model_name='pbx',
            name='max_channels',
            field=models.PositiveIntegerField(default=100, help_text='Live calls on this PBX, all tenants.'),
        ),
        migrations.AlterField(
            model_name='pbx',
            name='password_env',
            field=models.CharField(blank=True, help_text='Name of the environment variable holding the ARI password (platform PBXs only).', max_length=100),
        ),
        migrations.AddField(
            model_name='pbx',
            name='tenants',
            field=models.ManyToManyField(blank=True, related_name='pbxs', through='campaigns.PbxPlacement', to='tenants.tenant'),
        ),
        migrations.AddConstraint(
            model_name='pbx',
            constraint=models.UniqueConstraint(condition=models.Q(('owner__isnull', True)), fields=('name',), name='pbx_unique_platform_name'),
        ),
        migrations.AddConstraint(
            model_name='pbx',
            constraint=models.UniqueConstraint(fields=('owner', 'name'), name='pbx_unique_owner_name'),
        ),
        migrations.AddConstraint(
            model_name='pbx',
            constraint=models.CheckConstraint(condition=models.Q(('owner__isnull', True), ('password_env', ''), _connector='OR'), name='pbx_own_password_is_stored', violation_error_message="A tenant's own PBX keeps its password stored (encrypted), never in an environment variable."),
        ),
        migrations.AddConstraint(
            model_name='pbxplacement',
            constraint=models.UniqueConstraint(fields=('tenant', 'pbx'), name='pbxplacement_unique_tenant_pbx'),
        ),
        migrations.AddConstraint(
            model_name='pbxplacement',
            constraint=models.CheckConstraint(condition=models.Q(('max_channels__isnull', True), ('max_channels__gte', 1), _connector='OR'), name='pbxplacement_max_channels_gte_1'),
        ),
    ]
