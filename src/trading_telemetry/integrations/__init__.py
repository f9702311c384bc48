"""Ready-made bridges from trading engines' own events to the catalog's metrics.

- :mod:`trading_telemetry.integrations.nautilus`: a NautilusTrader Actor
  (``pip install 'trading-telemetry[nautilus]'``).
"""
