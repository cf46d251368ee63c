"""The `indexloan` command line (entry point `api.cli.main:app`)."""
