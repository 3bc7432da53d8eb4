"""The HTTP front end: the FastAPI app, its middleware, routes, schemas and offline docs.

Every rule it applies lives in the application layer (api/application.py and its
friends) that the CLI and the web pages call too; this package only speaks HTTP.
"""
