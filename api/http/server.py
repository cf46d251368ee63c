"""The ASGI app built from settings (what `indexloan serve` and uvicorn workers import)."""

from api.http.app import create_app

app = create_app()
