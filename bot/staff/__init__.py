"""The staff web application, served under /staff/ (assembled in bot/staff/application.py)."""
