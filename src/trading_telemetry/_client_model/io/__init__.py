"""Generated from Prometheus' client_model (see trading_telemetry._client_model)."""
