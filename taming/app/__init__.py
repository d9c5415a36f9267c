"""`taming app`: interactive sampling from a trained transformer, the top layer (nothing else imports it).
Its modules: docs/ARCHITECTURE.md, "app/"; the page (page.py) is widgets only, over taming.generation.
"""
