"""introspect: what did my network actually learn?"""
__version__ = "0.1.0"
