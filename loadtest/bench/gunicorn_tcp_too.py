"""gunicorn.conf.py as shipped, and TCP port 8000 besides: for wrk straight, and for the nginx that
reaches gunicorn over TCP (the bench's -tcp services). Every worker accepts on the port; each keeps
its own Unix socket, as shipped. Given as gunicorn's -c after the shipped one."""

import runpy

shipped = runpy.run_path("/srv/gunicorn/gunicorn.conf.py")
globals().update({name: value for name, value in shipped.items() if not name.startswith("__")})
bind = [*shipped["bind"], "0.0.0.0:8000"]
