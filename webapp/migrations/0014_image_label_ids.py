import webapp.fields
from django.db import migrations


def fill_and_index(apps, schema_editor):
    """Every image's label ids from its label rows; on PostgreSQL a GIN index over them
    (the tag filters' index; SQLite filters through the label rows)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE webapp_image AS i SET label_ids = l.ids FROM (SELECT image_id, "
                "array_agg(DISTINCT label_id ORDER BY label_id) AS ids FROM "
                "webapp_imagelabel GROUP BY image_id) AS l WHERE l.image_id = i.id")
            cursor.execute("CREATE INDEX image_label_ids_gin ON webapp_image "
                           "USING gin (label_ids)")
        else:
            cursor.execute(
                "UPDATE webapp_image SET label_ids = COALESCE((SELECT json_group_array("
                "label_id) FROM (SELECT DISTINCT label_id FROM webapp_imagelabel WHERE "
                "image_id = webapp_image.id ORDER BY label_id)), '[]')")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS image_label_ids_gin")


class Migration(migrations.Migration):

    dependencies = [
        ('webapp', '0013_image_data_window'),
    ]

    operations = [
        migrations.AddField(
            model_name='image',
            name='label_ids',
            field=webapp.fields.LabelIdsField(blank=True, default=list, editable=False, help_text="ids of the current labels, sorted: the tag filters' indexed form (webapp.services.label_index), kept by the curation service"),
        ),
        migrations.RunPython(fill_and_index, drop_index),
    ]
