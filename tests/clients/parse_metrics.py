"""Parses an OpenMetrics exposition from stdin with the reference Python parser
(prometheus_client) and prints its samples as JSON lines: name, labels, value.
A malformed exposition makes the parser raise, and this script exit non-zero."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({"family": family.name, "type": family.type,
                          "name": sample.name, "labels": sample.labels,
                          "value": sample.value}))
