"""Imagery foundation shared by ``classifier``, ``retrieval`` and the web app: what a
file is (by its magic bytes) and how GDAL is confined. No Django, no model code here."""
