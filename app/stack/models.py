from django.db import models


class World(models.Model):
    """The TechEmpower table: 10,000 rows of random numbers, read by /db and /queries."""

    random_number = models.IntegerField()

    class Meta:
        db_table = "world"


class Item(models.Model):
    """One row per POST /items: the write path the durability drills count (key is the client's)."""

    key = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "item"
