"""Parses a metrics exposition from stdin with the reference Python parsers
(prometheus_client): `openmetrics` (the default) or `prometheus` (the classic text
format, version 0.0.4), named by the first argument. Prints the samples as JSON
lines: name, labels, value. A malformed exposition makes the parser raise, and this
script exit non-zero."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus

parser = {"openmetrics": openmetrics, "prometheus": prometheus}[(sys.argv[1:] or ["openmetrics"])[0]]
for family in parser(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({"family": family.name, "type": family.type,
                          "name": sample.name, "labels": sample.labels,
                          "value": sample.value}))
