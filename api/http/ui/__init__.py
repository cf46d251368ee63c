"""The console in the browser (/ui): server-rendered pages for loan officers and risk staff.

`routes.py` holds the pages, `sessions.py` the sign-in sessions (their table is imported by
`api.database`), `views.py` what a page shows of a stored quote, `charts.py` the inline SVG charts,
`i18n.py` the Chinese and English texts and number formats."""
