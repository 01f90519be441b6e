"""The HTTP service: a thin FastAPI adapter over :mod:`hospital_bulk`."""
