"""`lrsa dashboard`: a live brand-monitoring web page over the aggregates, alerts and results topics.

Depends on the core (lrsa/), kafka-python, aiohttp and plotly's bundled plotly.js only; never on
workers/, serving/ or training/.
"""
