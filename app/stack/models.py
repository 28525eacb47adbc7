from django.db import models


class World(models.Model):
    """The TechEmpower table: 10,000 rows of random numbers, read by /db and /queries."""

    random_number = models.IntegerField()

    class Meta:
        db_table = "world"
