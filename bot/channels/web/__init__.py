"""The web chat channel: the JSON API (`api`), its guards and limits, its wire format, the
OpenAPI document, the widget's static files and translated chrome."""
