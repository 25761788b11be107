"""gunicorn's settings, read from the working directory (the image's /app) whatever the command line says.

The access log names the path only, never the query string: an admin search (``?q=<family name>``) or an API
filter must not write patient data to the log. Paths carry record ids only — except a nurse's calendar feed,
whose secret token is the path itself (see README, "Security and privacy").
"""

access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s'
