"""`triage web`: the decision log in a browser, for the people who review triage.

    app.py           the application: its routes, the store it reads, its error pages
    security.py      the guard every request passes: sessions, the token, CSRF, headers, read-only
    pages.py         what every page shares: templates, the store, parameters, errors
    log_pages.py     the log, one decision, corrections; review.py the needs-review queue
    stats_page.py    the figures of `triage stats`, with charts drawn by charts.py as SVG
    threads_page.py  the thread registry and each thread's messages
    server.py        where it may listen, and listening (uvicorn)

Pages read through triage.log, as the command line does, and a correction goes through the same
function as `triage correct`. Mail is only ever shown as escaped text: no HTML from a message is
rendered, nothing remote is loaded, no link in mail is made clickable. Everything the pages load is
served from static/ (no CDN); script only adds keyboard shortcuts, and the pages read without it.
Starlette and uvicorn are the `web` extra, imported only by `triage web`.
"""
