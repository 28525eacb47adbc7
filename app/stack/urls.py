from django.urls import path

from stack import views

urlpatterns = [
    path("", views.index, name="index"),
    path("plaintext", views.plaintext),
    path("json", views.json_view),
    path("db", views.db),
    path("queries", views.queries),
    path("stream", views.stream),
    path("events", views.events),
    path("slow", views.slow),
    path("upload", views.upload),
    path("items", views.items),
    path("request-info", views.request_info),
    path("healthz", views.healthz),
    path("readyz", views.readyz),
]
