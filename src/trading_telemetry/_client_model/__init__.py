"""Prometheus' client_model message definitions (``io/prometheus/client/metrics.proto``)
and the Python classes protoc generates from them.

The package never imports the generated classes: ``_protobuf`` writes the wire format by
hand, and the tests decode its output with these classes as the reference. Regenerate with
``make proto`` (``python -m trading_telemetry._client_model._generate``); a unit test
checks that doing so gives the committed files.
"""
