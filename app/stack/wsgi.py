"""The one WSGI entry point: gunicorn and uWSGI both load stack.wsgi:application."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stack.settings")

application = get_wsgi_application()
