"""myapi: a store back end served as a resource-class REST API on Flask-RESTful."""

__version__ = "0.1.0"
