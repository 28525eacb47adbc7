"""The one WSGI entry point: gunicorn and uWSGI both load stack.wsgi:application."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stack.settings")

from stack import metrics

# Timed for the app server's metrics when METRICS_BIND is set; the app itself otherwise.
application = metrics.instrument(get_wsgi_application())
