"""The `introspect` command line (installed as the package introspect_cli)."""
