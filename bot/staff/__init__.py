"""The staff web application, served under /staff/ (see bot/staff/web.py)."""
